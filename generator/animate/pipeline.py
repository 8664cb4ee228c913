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

import torch
from PIL import Image

from generator.animate.config import AnimationConfig
from generator.animate.keyframes import Motion, MotionSchedule, PromptTimeline, prompt_timeline
from generator.animate.mode import ANIMATE
from generator.animate.motion import move, revealed
from generator.animate.restyle import VideoSource, default_size, open_source
from generator.animate.state import AnimationState, Resume
from generator.devices import SeedStreams, auto_size, deterministic, seed_everything
from generator.errors import InputError
from generator.events import Done, Event, Notice, Preview, Progress
from generator.io.images import pil_to_tensor
from generator.io.masks import feather_outward, grid_mask
from generator.runs import GenerationRun, RunState
from generator.text_to_image.latents import encode_pixels
from generator.text_to_image.loop import GuidanceLoop, ImageEdit
from generator.text_to_image.pipeline import TextToImage, check_reproducible, optimise, resolve_size
from generator.text_to_image.targets import ImageTargets, PromptSpec, build_targets
from generator.upscale.tiles import upscale_results

DEFAULT_FRAMES = 60


def frame_seed(seed: int, frame: int) -> int:
    """The seed of frame ``frame``'s random streams: the run's seed for frame 0 (so frame 0 is
    the text-to-image result), a hash of ``(seed, frame)`` for the others."""
    if frame == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{frame}".encode()).digest()[:8], "big") >> 1


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
        return GenerationRun(self._events(config, clip_weights, state, resume), state)

    def _events(self, config: AnimationConfig, clip_weights: list[float], state: AnimationState,
                resume: Resume | None) -> Iterator[Event]:
        device = self.pipeline.device
        check_reproducible(config, device)
        with deterministic(device, config.deterministic):
            yield from self._frames(config, clip_weights, state, resume)

    def _plan(self, config: AnimationConfig, state: AnimationState
              ) -> tuple[MotionSchedule, VideoSource | None, int, PromptTimeline, tuple[int, int], str | None]:
        """Check every setting before any work: motion, input video, frames, prompts, size."""
        motion = config.motion
        schedule = MotionSchedule.parse(motion.zoom, motion.angle, motion.translate_x, motion.translate_y,
                                        smooth=motion.smooth)
        restyle = config.restyle
        source = open_source(restyle.video_init, every=restyle.every, folder_fps=config.output.fps) \
            if restyle.video_init else None
        frames = config.frames or (source.count if source else DEFAULT_FRAMES)
        if source is not None:
            frames = min(frames, source.count)
        timeline = prompt_timeline(config.prompts, config.prompt_at, frames=frames,
                                   change_every=config.change_prompt_every)
        factor = self.pipeline.vqgan.downsample_factor
        notice = None
        if source is not None and config.size is None:
            size = default_size(source, max(auto_size(self.pipeline.device)), factor)
        else:
            size, notice = resolve_size(config, factor, self.pipeline.device)
        state.fps = source.fps if source is not None else float(config.output.fps)
        state.audio = source.audio if source is not None else None
        state.total = frames
        state.config.update(size=list(size), frames=frames)
        return schedule, source, frames, timeline, size, notice

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
        inputs = source.frames(size, start) if source is not None else None
        first_steps = config.first_frame_steps if config.first_frame_steps is not None else \
            (config.steps_per_frame if source is not None else config.steps)
        for index in range(start, frames):
            frame_started = time.perf_counter()
            text = timeline.at(index)
            motion = schedule.at(index) if index else Motion()
            streams = SeedStreams.from_seed(frame_seed(config.seed, index), device)
            if index == 0 and source is None:
                first = config.replace(prompts=text, change_prompt_every=0, steps=max(first_steps, 1))
                yield from pipeline.start_image(loop, first, size)
            else:
                pixels = self._start_pixels(previous, motion, next(inputs) if inputs is not None else None,
                                            config.restyle.blend)
                latent = encode_pixels(pipeline.vqgan, pixels)
                edit = self._border_edit(pixels, latent, motion, config) if source is None else None
                if not loop.images:
                    loop.add_image(latent, targets_for(text), streams, frame_optim, edit=edit)
                else:
                    loop.replace_latent(0, latent, reset_optimiser=True)
                    loop.set_edit(0, edit)
                    image = loop.images[0]
                    image.streams, image.optim = streams, frame_optim  # this frame's own draws and weights
            loop.retarget(0, targets_for(text))
            steps = first_steps if index == 0 else config.steps_per_frame
            loss = yield from self._optimise(loop, steps, index, frames, size, config, started)
            previous = loop.decode()[0]
            state.records.append({
                "frame": index, "zoom": motion.zoom, "angle": motion.angle, "translate_x": motion.translate_x,
                "translate_y": motion.translate_y, "prompt": text, "steps": steps, "loss": loss,
                "seconds": round(time.perf_counter() - frame_started, 4), "seed": streams.seed,
                **({"input_frame": index * source.every} if source is not None else {}),
            })
            state.last_frame, state.step = previous, index + 1
            yield Preview("frame", index, previous)
            yield Progress(ANIMATE.name, index + 1, frames, time.perf_counter() - started, loss=loss)
            if config.upscale.upscale:
                upscaled = yield from upscale_results([previous], config.upscale, pipeline.bench.upscaler)
                yield Preview("upscaled", index, upscaled[0])
        finished = time.perf_counter()
        made = frames - start
        timings = {"load": pipeline.load_seconds, "total": finished - started,
                   "seconds_per_frame": (finished - started) / max(made, 1)}
        yield Done(images=(previous,), config=dict(state.config), seed=config.seed, timings=timings)

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
