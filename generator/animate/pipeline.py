"""Animations: zoom, pan and rotate videos, prompts that change at frames, and video restyle.

An :class:`Animator` drives one :class:`~generator.text_to_image.loop.GuidanceLoop` frame by frame.
Frame 0 is a text-to-image run of ``first_frame_steps`` (default ``steps``) steps, the same
image ``python -m generator`` makes with that seed; in a restyle it starts from the first
input frame instead. Every later frame k starts from frame k-1's saved image (8-bit, exactly
the PNG on disk) moved by the motion at k (:mod:`generator.animate.motion`) or, in a restyle,
from input frame k blended with it; that picture is re-encoded by the VQGAN into the latent
(``loop.replace_latent``) and optimised for ``steps_per_frame`` steps.

Optimiser state does not carry over between frames: each frame starts a fresh optimiser
(``reset_optimiser=True``) and fresh random streams seeded from ``(seed, frame)``. Adam's
running moments belong to the latent of the previous frame, which the re-encoding replaced, so
carrying them would push the new latent along stale directions; and a frame that depends only
on the previous frame's PNG, the settings and its own seed can be made again exactly, which is
what ``--resume`` needs: a resumed animation gives the same frames as an uninterrupted one on
the CPU. Coherence comes instead from ``frame_init_weight``, an MSE that holds each frame near
the latent it started from (the moved previous frame).

The pipeline writes no files. It yields a ``Preview`` (stage ``frame``, step = frame number)
for every finished frame, another (stage ``upscaled``) for its upscaled copy with ``--upscale``,
and the per-frame record (frame, motion, prompt, steps, loss, seconds, seed) in
:attr:`AnimationState.records`; the sink writes ``frames/``, ``frames.jsonl`` and the video.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from generator.animate.config import AnimationConfig
from generator.animate.flow import (
    OFF,
    STILL_BELOW,
    FlowNetwork,
    FramePairFlow,
    consistency_target,
    pair_flow,
    warping_error,
)
from generator.animate.keyframes import Motion, MotionSchedule, PromptTimeline, prompt_timeline
from generator.animate.mode import ANIMATE
from generator.animate.motion import move, revealed
from generator.animate.restyle import VideoSource, check_one_size, default_size, open_source
from generator.animate.state import AnimationState, Resume
from generator.devices import SeedStreams, auto_size, deterministic, seed_everything
from generator.errors import InputError
from generator.events import Done, Event, Notice, Preview, Progress
from generator.io.audio import probe_audio
from generator.io.flows import FlowCache
from generator.io.images import pil_to_tensor
from generator.io.masks import feather_outward, grid_mask
from generator.runs import GenerationRun, RunState
from generator.text_to_image.checks import check_settings
from generator.text_to_image.latents import encode_pixels
from generator.text_to_image.loop import GuidanceLoop, ImageEdit, PixelAnchor
from generator.text_to_image.pipeline import (
    TextToImage,
    check_reproducible,
    optimise,
    resolve_size,
)
from generator.text_to_image.targets import ImageTargets, PromptSpec, build_targets
from generator.upscale.tiles import upscale_results

DEFAULT_FRAMES = 60


def frame_seed(seed: int, frame: int) -> int:
    """The seed of frame ``frame``'s random streams: the run's seed for frame 0 (so frame 0 is
    the text-to-image result), a hash of ``(seed, frame)`` for the others."""
    if frame == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{frame}".encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class Timing:
    """When an animation's frames are, and what moves them.

    Attributes:
        source: the input video of a restyle (None: none).
        frames: frames to make.
        fps: the video's frame rate before interpolation.
        audio: the file whose sound the video gets and the expressions follow (None: none).
        schedule: the motion at every frame, bound to the frame rate and the sound.
    """

    source: VideoSource | None
    frames: int
    fps: float
    audio: Path | None
    schedule: MotionSchedule


def check_animation(config: AnimationConfig) -> None:
    """What an animation can be told without any model, before anything is loaded or
    downloaded: its keyframes and expressions parse, the sound they follow is there, its
    prompts parse and frame 0 has one, and the images it names are there (see
    :func:`~generator.text_to_image.pipeline.check_settings`).

    Raises:
        InputError, ConfigError: the first problem found.
    """
    motion = config.motion
    schedule = MotionSchedule.parse(motion.zoom, motion.angle, motion.translate_x, motion.translate_y,
                                    smooth=motion.smooth)
    schedule.check_sound(bool(motion.audio or config.restyle.video_init))  # a video's sound: checked when it opens
    if motion.audio:
        probe_audio(motion.audio)
    timeline = prompt_timeline(config.prompts, config.prompt_at, frames=config.frames or 100_000,
                               change_every=config.change_prompt_every)
    check_settings(config.replace(prompts=timeline.at(0), change_prompt_every=0))


def plan_timing(config: AnimationConfig) -> Timing:
    """The frames, frame rate, sound and motion schedule of ``config``, every setting checked
    (the input video opened, the sound decoded, every expression evaluated).

    Raises:
        InputError: a bad keyframe or expression, an unreadable video or sound, frames of mixed
            sizes with flow.
    """
    motion, restyle = config.motion, config.restyle
    schedule = MotionSchedule.parse(motion.zoom, motion.angle, motion.translate_x, motion.translate_y,
                                    smooth=motion.smooth)
    source = open_source(restyle.video_init, every=restyle.every, folder_fps=config.output.fps) \
        if restyle.video_init else None
    if source is not None and restyle.flow != OFF:
        check_one_size(source)
    frames = config.frames or (source.count if source else DEFAULT_FRAMES)
    if source is not None:
        frames = min(frames, source.count)
    fps = source.fps if source is not None else float(config.output.fps)
    audio = Path(motion.audio) if motion.audio else source.audio if source is not None else None
    schedule = schedule.for_frames(frames, fps=fps, audio=audio, video_length=config.video_length)
    return Timing(source, frames, fps, audio, schedule)


BORDER_FEATHER = 2.0
"""Pixels over which an outpainted border blends into the kept frame (a Gaussian's standard deviation)."""


class Animator:
    """Animations made with the models of a :class:`TextToImage`.

    Example:
        >>> animator = Animator(TextToImage.from_pretrained())
        >>> config = AnimationConfig(prompts="a forest", frames=30, motion=MotionConfig(zoom="1.02"))
        >>> for event in animator.run(config): ...
    """

    def __init__(self, pipeline: TextToImage):
        self.pipeline = pipeline

    def run(self, config: AnimationConfig, resume: Resume | None = None) -> GenerationRun:
        """Start an animation (or continue ``resume``); nothing happens until it is iterated."""
        clip_weights, models = self.pipeline._clip_weights(config)  # resolved as for text to image
        config = config.with_seed()
        state = AnimationState(mode=ANIMATE.name, label=config.prompts or (config.prompt_at or ("animation",))[0],
                               config=config.replace(models=models).to_dict(), total=config.frames or 0)
        return GenerationRun(self._events(config, clip_weights, state, resume), state, self.pipeline.device)

    def _events(self, config: AnimationConfig, clip_weights: list[float], state: AnimationState,
                resume: Resume | None) -> Iterator[Event]:
        device = self.pipeline.device
        check_reproducible(config, device)
        try:
            with deterministic(device, config.deterministic):
                yield from self._frames(config, clip_weights, state, resume)
        finally:
            if state.flows is not None:
                state.flows.discard()  # a scratch cache that never reached a run folder

    def _plan(self, config: AnimationConfig, state: AnimationState
              ) -> tuple[MotionSchedule, VideoSource | None, int, PromptTimeline, tuple[int, int], str | None]:
        """Check every setting before any work: motion, input video, frames, prompts, size."""
        timing = plan_timing(config)
        source, frames = timing.source, timing.frames
        timeline = prompt_timeline(config.prompts, config.prompt_at, frames=frames,
                                   change_every=config.change_prompt_every)
        factor = self.pipeline.vqgan.downsample_factor
        notice = None
        if source is not None and config.size is None:
            size = default_size(source, max(auto_size(self.pipeline.device)), factor)
        else:
            size, notice = resolve_size(config, factor, self.pipeline.device)
        state.fps, state.audio = timing.fps, timing.audio
        state.total = frames
        state.config.update(size=list(size), frames=frames)
        return timing.schedule, source, frames, timeline, size, notice

    def _frames(self, config: AnimationConfig, clip_weights: list[float], state: AnimationState,
                resume: Resume | None) -> Iterator[Event]:
        started = time.perf_counter()
        pipeline, device = self.pipeline, self.pipeline.device
        schedule, source, frames, timeline, size, notice = self._plan(config, state)
        if notice:
            yield Notice(notice)
        start = 0
        previous: Image.Image | None = None
        if resume is not None:
            start = len(resume.frames)
            if start >= frames:
                raise InputError(f"{resume.parent} already holds all {frames} frames; there is nothing to resume.")
            for index, (image, record) in enumerate(zip(resume.frames, resume.records, strict=True)):
                state.records.append({**record, "resumed_from": str(resume.parent)})
                state.last_frame, state.step = image, index + 1
                yield Preview("frame", index, image)
            previous = resume.frames[-1]
        seed_everything(config.seed)
        loop = pipeline.new_loop(config, clip_weights)
        state.decode = lambda: loop.decode()[0]
        targets: dict[str, ImageTargets] = {}

        def targets_for(text: str) -> ImageTargets:
            """Targets of a prompt, built with streams of their own: the same at every frame and after a resume."""
            if text not in targets:
                spec = PromptSpec(text, config.image_prompts, config.noise_prompts)
                targets[text] = build_targets(loop.guide, spec, steps=1, size=size,
                                              streams=SeedStreams.from_seed(config.seed, device))
            return targets[text]

        frame_optim = dataclasses.replace(config.optim, init_weight=config.frame_init_weight, init_weight_decay_steps=0)
        flows = None
        if source is not None and config.restyle.flow != OFF:
            if config.restyle.blend:
                yield Notice("--blend mixes in the previous output moved by the motion only with --flow off; with "
                             "flow it is warped by the input's own motion instead.")
            network = pipeline.bench.flow_network(config.restyle.flow_model) if config.restyle.flow == "raft" else None
            flows = yield from self._flows(source, size, frames, config, resume, state, network)
        inputs = source.frames(size, start) if source is not None else None
        errors: list[float] = []
        first_steps = config.first_frame_steps if config.first_frame_steps is not None else \
            (config.steps_per_frame if source is not None else config.steps)
        for index in range(start, frames):
            frame_started = time.perf_counter()
            text = timeline.at(index)
            pair: FramePairFlow | None = None  # this frame's flow, read once from the cache
            motion = schedule.at(index) if index else Motion()
            streams = SeedStreams.from_seed(frame_seed(config.seed, index), device)
            if index == 0 and source is None:
                first = config.replace(prompts=text, change_prompt_every=0, steps=max(first_steps, 1))
                yield from pipeline.start_image(loop, first, size)
            else:
                pair = FramePairFlow(*flows.read(index)) if flows is not None and index else None
                pixels, anchor = self._start(previous, motion, next(inputs) if inputs is not None else None,
                                             config, pair)
                latent = encode_pixels(pipeline.vqgan, pixels)
                edit = self._border_edit(pixels, latent, motion, config) if source is None else None
                if not loop.images:
                    loop.add_image(latent, targets_for(text), streams, frame_optim, edit=edit)
                else:
                    loop.replace_latent(0, latent, reset_optimiser=True)
                    loop.set_edit(0, edit)
                    image = loop.images[0]
                    image.streams, image.optim = streams, frame_optim  # this frame's own draws and weights
                loop.set_anchor(0, anchor)
            loop.retarget(0, targets_for(text))
            steps = first_steps if index == 0 else config.steps_per_frame
            loss = yield from self._optimise(loop, steps, index, frames, size, config, started)
            made = loop.decode()[0]
            error = None
            if pair is not None and previous is not None:
                error = warping_error(pil_to_tensor(made), pil_to_tensor(previous), pair)
                errors.append(error)
            previous = made
            state.records.append({
                "frame": index, "zoom": motion.zoom, "angle": motion.angle, "translate_x": motion.translate_x,
                "translate_y": motion.translate_y, "prompt": text, "steps": steps, "loss": loss,
                "seconds": round(time.perf_counter() - frame_started, 4), "seed": streams.seed,
                **({"input_frame": index * source.every} if source is not None else {}),
                **({"warping_error": round(error, 6)} if error is not None else {}),
                **schedule.features_at(index),
            })
            state.last_frame, state.step = previous, index + 1
            yield Preview("frame", index, previous)
            yield Progress(ANIMATE.name, index + 1, frames, time.perf_counter() - started, loss=loss)
            if config.upscale.upscale:
                upscaled = yield from upscale_results([previous], config.upscale, pipeline.bench.upscaler)
                yield Preview("upscaled", index, upscaled[0])
        finished = time.perf_counter()
        made_count = frames - start
        timings = {"load": pipeline.load_seconds, "total": finished - started,
                   "seconds_per_frame": (finished - started) / max(made_count, 1)}
        if errors:
            state.metrics["warping_error"] = round(sum(errors) / len(errors), 6)
            yield Notice(f"temporal warping error {state.metrics['warping_error']:.4f}: the mean difference between "
                         "each frame and the previous one warped by the input's flow (0 to 1; lower flickers less).")
        yield Done(images=(previous,), config=dict(state.config), seed=config.seed, timings=timings)

    @staticmethod
    def _flows(source: VideoSource, size: tuple[int, int], frames: int, config: AnimationConfig,
               resume: Resume | None, state: AnimationState, network: FlowNetwork | None) -> Iterator[Event]:
        """The flows of the input frames (this generator's return value, a :class:`FlowCache`, also
        ``state.flows`` for the sink to keep in the run folder): those the resumed run kept, or
        computed now, once, before the first frame (stage ``flow``)."""
        key = {"video": str(source.path.resolve()), "size": list(size), "every": source.every,
               "method": config.restyle.flow, "frames": frames,
               **({"model": config.restyle.flow_model} if network is not None else {})}
        cache = FlowCache.find(resume.parent, key) if resume is not None else None
        if cache is not None and cache.complete(frames):
            state.flows = cache
            return cache
        cache = state.flows = FlowCache.new(key)
        started = time.perf_counter()
        inputs = source.frames(size)
        before = next(inputs, None)
        still = True
        for index in range(1, frames):
            current = next(inputs)
            pair = pair_flow(before, current, config.restyle.flow, network)
            cache.write(index, pair.backward, pair.consistent)
            still = still and pair.motion < STILL_BELOW
            before = current
            yield Progress("flow", index, frames - 1, time.perf_counter() - started)
        if still and frames > 1:
            yield Notice(f"the video {source.path.name} barely moves (under {STILL_BELOW} pixels a frame), so the "
                         "flow keeps each frame where the previous one was; --flow off restyles each frame on its "
                         "own instead.")
        return cache

    def _border_edit(self, pixels: torch.Tensor, latent: torch.Tensor, motion: Motion,
                     config: AnimationConfig) -> ImageEdit | None:
        """With ``border outpaint``, the frame's edit: the moved previous frame is kept and only
        the pixels the motion brought in (mirrored there as a start) are made anew, feathered
        outward from the kept frame; None otherwise, or when the motion brings nothing in."""
        if config.motion.border != "outpaint":
            return None
        height, width = pixels.shape[-2:]
        brought = revealed(motion, width, height)  # (H, W)
        if float(brought.max()) == 0:
            return None
        mask = feather_outward(1 - brought, BORDER_FEATHER)
        cells = grid_mask(brought, self.pipeline.vqgan.downsample_factor, dilate=1)[None, None]
        return ImageEdit(pixels, mask[None, None], cells, latent, (width, height))

    @classmethod
    def _start(cls, previous: Image.Image | None, motion: Motion, source: Image.Image | None,
               config: AnimationConfig, pair: FramePairFlow | None) -> tuple[torch.Tensor, PixelAnchor | None]:
        """Where a frame after the first starts, (1, 3, H, W) in [0, 1], and the pixels its
        temporal consistency loss holds it to (None with ``flow_weight`` 0 or a restyle without flow).

        A restyle with flow starts from the previous output warped onto the input frame by the
        input's flow where that is consistent, and from the input frame where it is not
        (disoccluded); an animation from the previous frame moved by the motion, held to it
        outside the border the motion brings in."""
        weight = config.flow_weight
        if pair is not None:
            assert previous is not None and source is not None
            warped, mask = consistency_target(pil_to_tensor(previous), pair)  # (1, 3, H, W), (1, 1, H, W)
            pixels = warped * mask + pil_to_tensor(source) * (1 - mask)
            return pixels, PixelAnchor(warped, mask, weight) if weight else None
        pixels = cls._start_pixels(previous, motion, source, config.restyle.blend)
        if source is not None or not weight:
            return pixels, None
        kept = 1 - revealed(motion, pixels.shape[-1], pixels.shape[-2])  # (H, W)
        return pixels, PixelAnchor(pixels, kept[None, None], weight)

    @staticmethod
    def _start_pixels(previous: Image.Image | None, motion: Motion, source: Image.Image | None,
                      blend: float) -> torch.Tensor:
        """Where a frame starts, (1, 3, H, W) in [0, 1]: the previous frame moved, or the input
        frame (mixed with the moved previous frame by ``blend``)."""
        moved = move(pil_to_tensor(previous), motion) if previous is not None else None  # (1, 3, H, W)
        if source is None:
            assert moved is not None
            return moved
        pixels = pil_to_tensor(source)  # (1, 3, H, W)
        if moved is None or not blend:
            return pixels
        return pixels * (1 - blend) + moved * blend

    @staticmethod
    def _optimise(loop: GuidanceLoop, steps: int, index: int, frames: int, size: tuple[int, int],
                  config: AnimationConfig, started: float) -> Iterator[Event]:
        """Optimise one frame; its progress is reported as the animation's (frames done so
        far), with the loss of each step. Returns the frame's last loss (None without steps)."""
        loss = None
        scratch = RunState(mode=ANIMATE.name, label="")  # optimise counts steps here, not in the frames
        for event in optimise(loop, steps, scratch, what=f"at {size[0]}x{size[1]} with {config.cutouts.cutn} "
                                                         f"cutouts (frame {index})"):
            if isinstance(event, Progress):
                loss = event.loss if event.loss is not None else loss
                yield Progress(ANIMATE.name, index, frames, time.perf_counter() - started, loss=event.loss,
                               losses=event.losses)
            else:
                yield event
        return loss
