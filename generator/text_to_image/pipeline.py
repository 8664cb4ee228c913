"""The text-to-image pipeline: a :class:`TextToImage` holds loaded models; ``run(config)`` yields events.

The pipeline never writes files. A sink (the CLI, the web UI, a script) iterates the run,
shows progress, saves previews and results; closing the run cancels it within one step.

Example:
    >>> pipe = TextToImage.from_pretrained()                     # default VQGAN + CLIP ViT-B/32
    >>> pipe = TextToImage.from_workbench(models, bench)          # the models of a process's Workbench
    >>> run = pipe.run(GenerationConfig(prompts="city at night", steps=200, seed=7))
    >>> for event in run:
    ...     if isinstance(event, Done):
    ...         event.images[0].save("city.png")
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

import torch

from generator.config import ClipModelConfig, GenerationConfig, ModelsConfig, UpscaleConfig
from generator.decoder.protocol import Decoder
from generator.decoder.tiling import wrap_around
from generator.devices import (
    SeedStreams,
    auto_size,
    describe_device,
    deterministic,
    is_out_of_memory,
    precision_for,
    release_memory,
    seed_everything,
)
from generator.errors import ConfigError, InputError, OutOfMemoryError
from generator.events import Done, Event, Notice, Preview, Progress, relay
from generator.runs import GenerationRun, RunState
from generator.sample.loader import Prior
from generator.sample.sampling import SamplingSettings, prior_codes
from generator.text_to_image.batched import ALL, BatchRun, batch_key
from generator.text_to_image.clip import ClipModel
from generator.text_to_image.cutouts import NONDETERMINISTIC_ON_CUDA, MakeCutouts, canonical_augments
from generator.text_to_image.edit import Canvas, check_memory, edit_canvas
from generator.text_to_image.latents import encode_pixels, initial_latent, random_codes, varied_start
from generator.text_to_image.loop import GuidanceLoop, ImageEdit, recomputed_levels
from generator.text_to_image.losses import ClipGuide, GuideMember
from generator.text_to_image.mode import TEXT_TO_IMAGE
from generator.text_to_image.targets import PromptSpec, build_targets
from generator.upscale.tiles import finish_with_upscale
from generator.weights.download import ProgressCallback
from generator.workbench import Workbench

logger = logging.getLogger(__name__)


def resolve_size(config: GenerationConfig, factor: int, device: torch.device) -> tuple[tuple[int, int], str | None]:
    """The run's (width, height), rounded down to the VQGAN factor, and a notice if it changed."""
    width, height = config.size or auto_size(device)
    rounded = (width // factor * factor, height // factor * factor)
    if min(rounded) < factor:
        raise InputError(f"size {width}x{height} is smaller than one VQGAN cell ({factor} pixels); "
                         "use a larger --size.")
    if rounded == (width, height):
        return rounded, None
    return rounded, (f"size {width}x{height} is not a multiple of the VQGAN's factor {factor}; "
                     f"using {rounded[0]}x{rounded[1]}.")


def plan_canvas(config: GenerationConfig, factor: int, device: torch.device) -> Canvas:
    """The canvas of a run: its size rounded down to the VQGAN's factor (with a note if it
    changed), or an edit's canvas (see :func:`generator.text_to_image.edit.edit_canvas`), whose
    memory is checked when an outpaint grows it.

    Raises:
        InputError: the size is below one VQGAN cell; the edit's inputs are bad; an outpaint
            would not fit the free memory.
    """
    if not config.edit.edits:
        size, notice = resolve_size(config, factor, device)
        return Canvas(size=size, output=size, notes=[notice] if notice else [])
    canvas = edit_canvas(config, factor)
    if config.edit.outpaint is not None:
        check_memory(canvas, config.recompute, device, "this outpaint")
    return canvas


def edited_size(config: GenerationConfig, canvas: Canvas) -> tuple[int, int]:
    """The size a run records: an edit's image size before its outpaint (so the recorded config
    repeats it), else the canvas's."""
    left, top, right, bottom = config.edit.outpaint or (0, 0, 0, 0)
    return canvas.output[0] - left - right, canvas.output[1] - top - bottom


def upscale_of(config: GenerationConfig) -> UpscaleConfig:
    """The upscaling of a run's result: a seamless tile is upscaled wrapping around the same axes."""
    upscale = config.upscale
    if config.edit.seamless and not upscale.upscale_seamless:
        return dataclasses.replace(upscale, upscale_seamless=config.edit.seamless)
    return upscale


def check_reproducible(config: GenerationConfig, device: torch.device) -> None:
    """A deterministic run on CUDA cannot use augmentations whose CUDA backward is not
    deterministic (they warp with ``grid_sample`` or resize with ``interpolate``).

    Raises:
        ConfigError: ``deterministic`` with such augmentations on a GPU.
    """
    if not (config.deterministic and device.type == "cuda"):
        return
    refused = [name for name in canonical_augments(config.cutouts.augments) if name in NONDETERMINISTIC_ON_CUDA]
    if refused:
        raise ConfigError(f"--deterministic on a GPU cannot use the augmentations {', '.join(refused)} (their CUDA "
                          "backward is not reproducible); leave them out of --augments, e.g. --augments jitter "
                          "erasing noise flip.")


def prompt_spec(config: GenerationConfig) -> PromptSpec:
    """The prompts of a config."""
    return PromptSpec(config.prompts, config.image_prompts, config.noise_prompts, config.change_prompt_every)


def optimise(loop: GuidanceLoop, steps: int, state: RunState, *, save_every: int = 0, stage: str = "optimise",
             what: str = "", report_every: int | None = None) -> Iterator[Event]:
    """Step ``loop`` ``steps`` times: Progress every step, a Preview of image 0 every
    ``save_every`` steps; ``state.step`` counts on from where it stood.

    The loss is read back (and checked to be finite) every ``report_every`` steps, at every
    preview and at the last step; other Progress events carry no loss. The default is every
    step on the CPU, where reading costs nothing, and every 10th on a GPU, where each read
    waits for the GPU to finish.

    Raises:
        OutOfMemoryError: the device ran out of memory; ``what`` (e.g. ``at 512x512 with 32
            cutouts``) says what was being done. The failed step's tensors are released before
            this is raised, so the latest image can still be decoded.
        NonFiniteError: the loss or the latents stopped being finite; the last good image stays decodable.
    """
    report_every = report_every or (10 if loop.device.type == "cuda" else 1)
    started = time.perf_counter()
    first = state.step
    out_of_memory = False
    try:
        for done in range(1, steps + 1):
            report = loop.step()
            for notice in loop.take_notices():
                yield Notice(notice)
            state.step = first + done
            preview = bool(save_every) and done % save_every == 0
            loss, parts = None, {}
            if preview or done == steps or done % report_every == 0:
                loop.check(report)
                loss, parts = report.values(0)
            del report
            yield Progress(stage, done, steps, time.perf_counter() - started, loss=loss, losses=parts)
            if preview:
                yield Preview(stage, state.step, loop.decode([0])[0])
    except (torch.OutOfMemoryError, RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        out_of_memory = True  # leave the except block first: its traceback holds the failed step's tensors
    if out_of_memory:
        loop.release()
        release_memory(loop.device)
        raise OutOfMemoryError(f"{describe_device(loop.device)} ran out of memory {what}; try a smaller --size, "
                               "fewer --cutn or --preset low-memory.")


class TextToImage:
    """Loaded models plus the text-to-image runs that use them.

    Args:
        vqgan: the VQGAN whose latent is optimised.
        clips: the CLIP models of the guiding ensemble.
        prior: a transformer prior for ``init=prior`` (its VQGAN must be ``vqgan``).
        models: what these models are (registry names or files), recorded in every output
            so that it can be repeated; defaults to labels of in-memory models.
        device: where the models live (default: the VQGAN's device).
        bench: the workbench that owns the models and gives the upscalers (default: a new one
            on ``device``, for models built in memory).
    """

    def __init__(self, vqgan: Decoder, clips: Sequence[ClipModel], *, models: ModelsConfig | None = None,
                 device: str | torch.device | None = None, prior: Prior | None = None,
                 bench: Workbench | None = None):
        if not clips:
            raise ValueError("TextToImage needs at least one CLIP model")
        if prior is not None and prior.vqgan is not vqgan:
            raise ValueError("with a prior, the VQGAN must be the prior's own")
        self.vqgan = vqgan
        self.clips = list(clips)
        self.prior = prior
        self.device = torch.device(device) if device is not None else vqgan.codebook.device
        self.models = models or ModelsConfig(
            vqgan="in-memory VQGAN",
            clip_models=tuple(ClipModelConfig(model=clip.name, pretrained=None) for clip in self.clips),
        )
        if len(self.models.clip_models) != len(self.clips):
            raise ValueError("models.clip_models must describe each CLIP model")
        self.load_seconds = 0.0
        self.requested = self.models  # what from_workbench was asked for (names before resolution)
        self.bench = bench or Workbench(self.device)

    @classmethod
    def from_workbench(cls, models: ModelsConfig | None, bench: Workbench) -> TextToImage:
        """The pipeline of the VQGAN and CLIP models ``models`` names, from ``bench`` (which
        loads each on first use, downloading it if needed, and keeps it).

        With ``models.prior`` the transformer is used too, and its own VQGAN (the recorded
        ``models.vqgan`` then names the transformer checkpoint).

        Raises:
            WeightsError: a file is missing (offline) or failed to download or verify.
            CheckpointError: a checkpoint is unsafe, damaged or does not fit its config.
        """
        models = requested = models or ModelsConfig()
        before = bench.load_seconds
        prior = None
        if models.prior:
            name, prior = bench.prior(models.prior, models.prior_config)
            models = dataclasses.replace(models, prior=name, vqgan=name, vqgan_config=models.prior_config)
            vqgan = prior.vqgan
        else:
            vqgan = bench.vqgan(models.vqgan, models.vqgan_config)
        clips = [bench.clip(spec.model, spec.pretrained) for spec in models.clip_models]
        pipeline = cls(vqgan, clips, models=models, device=bench.device, prior=prior, bench=bench)
        pipeline.requested = requested
        pipeline.load_seconds = bench.load_seconds - before
        return pipeline

    @classmethod
    def from_pretrained(cls, models: ModelsConfig | None = None, *, device: str | torch.device | None = None,
                        weights_dir: str | os.PathLike[str] | None = None, offline: bool | None = None,
                        progress: ProgressCallback | None = None) -> TextToImage:
        """:meth:`from_workbench` with a workbench of its own (a script's one pipeline)."""
        bench = Workbench(device, weights_dir=weights_dir, offline=offline, progress=progress)
        return cls.from_workbench(models, bench)

    def to(self, device: str | torch.device) -> TextToImage:
        """Move every model (VQGAN, CLIP, prior) to ``device``; returns self. Runs use
        :attr:`device`, so a pipeline moved away (to free a GPU) is moved back before its next run."""
        self.vqgan.to(device)
        for clip in self.clips:
            clip.to(device)
        if self.prior is not None:
            self.prior.to(device)
        return self

    def run(self, config: GenerationConfig) -> GenerationRun:
        """Start a text-to-image run. Nothing happens until the run is iterated.

        The seed is resolved here (``run.state.config["seed"]``). Progress comes every step, a
        Preview every ``output.save_every`` steps, and a final :class:`Done` with the image,
        the resolved config, the seed and timings.
        """
        clip_weights, models = self._clip_weights(config)
        config = config.with_seed()
        state = RunState(mode=TEXT_TO_IMAGE.name, label=config.prompts or "image",
                         config=config.replace(models=models).to_dict(), total=config.steps)
        return GenerationRun(self._events(config, clip_weights, state), state, self.device)

    def __call__(self, config: GenerationConfig) -> Done:
        """Run to the end and return the :class:`Done` event."""
        done = None
        with self.run(config) as run:
            for event in run:
                if isinstance(event, Done):
                    done = event
        assert done is not None
        return done

    def run_batch(self, configs: Sequence[GenerationConfig]) -> BatchRun:
        """Start text-to-image runs optimised together, in one forward and backward pass per
        step: latents stacked, each image with its own prompts, cutouts and random streams,
        so each comes out as it would alone (within float rounding; see :class:`BatchRun`).

        The configs may differ only in per-image settings (prompts, seed, init, learning rate
        and loss weights, upscaling, video); :func:`batch_key` tells which can share a batch.

        Raises:
            ConfigError: the configs cannot share a batch.
        """
        if not configs:
            raise ValueError("run_batch needs at least one config")
        configs = [config.with_seed() for config in configs]
        if len({batch_key(config) for config in configs}) > 1:
            raise ConfigError("these runs cannot be optimised together: they differ in size, steps, models, cutouts "
                              "or other shared settings; group them by batch_key first.")
        clip_weights, models = self._clip_weights(configs[0])
        states = [RunState(mode=TEXT_TO_IMAGE.name, label=config.prompts or "image",
                           config=config.replace(models=models).to_dict(), total=config.steps) for config in configs]
        return BatchRun(self._batch_events(configs, clip_weights, states), states)

    def _batch_events(self, configs: list[GenerationConfig], clip_weights: list[float],
                      states: list[RunState]) -> Iterator[tuple[int, Event]]:
        first = configs[0]
        check_reproducible(first, self.device)
        with deterministic(self.device, first.deterministic), wrap_around(self.vqgan, first.edit.seamless):
            started = time.perf_counter()
            if first.models.identity not in (self.models.identity, self.requested.identity):
                yield ALL, Notice("the config names other models than this pipeline holds; "
                                  f"using {describe_models(self.models)}.")
            canvas = plan_canvas(first, self.vqgan.downsample_factor, self.device)
            for notice in canvas.notes:
                yield ALL, Notice(notice)
            size = canvas.size
            loop = self.new_loop(first, clip_weights)
            for index, (config, state) in enumerate(zip(configs, states, strict=True)):
                state.config.update(size=list(edited_size(config, canvas)))
                seed_everything(config.seed)  # as a single run does before its start
                yield from relay(self.start_image(loop, config, canvas), lambda event, i=index: (i, event))
                state.decode = lambda i=index: loop.decode([i])[0]
                state.latent = lambda i=index: loop.images[i].latent.detach().cpu().clone()
            prepared = time.perf_counter()
            for event in optimise(loop, first.steps, states[0], save_every=first.output.save_every,
                                  what=f"at {size[0]}x{size[1]} with {first.cutouts.cutn} cutouts "
                                       f"and {len(configs)} images together"):
                for state in states[1:]:
                    state.step = states[0].step
                if isinstance(event, Preview):  # every image's frame, not only the first's
                    for index, image in enumerate(loop.decode()):
                        yield index, Preview(event.stage, event.step, image)
                else:
                    yield ALL, event
            finals = loop.decode()
            finished = time.perf_counter()
            for index, (config, state, final) in enumerate(zip(configs, states, finals, strict=True)):
                timings = {"prepare": prepared - started, "optimise": finished - prepared, "total": finished - started,
                           "steps_per_second": config.steps / max(finished - prepared, 1e-9),
                           "batch_size": float(len(configs))}
                done = Done(images=(final,), config=dict(state.config), seed=config.seed, timings=timings)
                done = yield from relay(finish_with_upscale(done, upscale_of(config), self.bench.upscaler,
                                                            self.load_seconds),
                                        lambda event, i=index: (i, event))
                yield index, done

    def new_loop(self, config: GenerationConfig, clip_weights: Sequence[float] | None = None) -> GuidanceLoop:
        """An empty :class:`GuidanceLoop` with the cutouts, optimiser and precision of ``config``."""
        weights = clip_weights if clip_weights is not None else self._clip_weights(config)[0]
        precision = precision_for(self.device, config.precision)
        self._keep_clip_weights_in(precision.clip_weights or torch.float32)
        cutouts = config.cutouts
        members = [GuideMember(clip, weight, MakeCutouts(clip.input_size, cutouts.cutn, cut_pow=cutouts.cut_pow,
                                                         augments=cutouts.augments, noise_fac=cutouts.noise_fac,
                                                         wrap=config.edit.seamless))
                   for clip, weight in zip(self.clips, weights, strict=True)]
        return GuidanceLoop(self.vqgan, ClipGuide(members), optimiser=config.optim.optimiser, device=self.device,
                            precision=precision,
                            recomputed_levels=recomputed_levels(self.vqgan, config.recompute),
                            compile=config.compile)

    def _keep_clip_weights_in(self, dtype: torch.dtype) -> None:
        """Round the CLIP weights to ``dtype`` for this run, or bring back float32 ones: read
        again from their files when the workbench loaded them, else (models built in memory)
        widened from the rounded values, with a warning."""
        for index, clip in enumerate(self.clips):
            if clip.dtype == dtype:
                continue
            if dtype.itemsize < clip.dtype.itemsize or not self.bench.holds(clip):
                if dtype.itemsize > clip.dtype.itemsize:
                    logger.warning("%s was rounded to %s earlier and cannot be read again; widening it to %s",
                                   clip.name, str(clip.dtype).removeprefix("torch."), str(dtype).removeprefix("torch."))
                clip.to_dtype(dtype)
            else:
                spec = self.models.clip_models[index]
                self.clips[index] = self.bench.reload_clip(spec.model, spec.pretrained).to_dtype(dtype)

    def start_image(self, loop: GuidanceLoop, config: GenerationConfig,
                    canvas: Canvas | tuple[int, int]) -> Generator[Event, None, int]:
        """Add the image ``config`` describes (its prompts, seed and initial latent; an edit's
        base and mask) to ``loop``, made on ``canvas`` (or a plain canvas of a size); the image's
        index is the return value. Sampling a prior start yields its progress; notes on the
        inputs (a mask stretched to fit) are Notices."""
        if not isinstance(canvas, Canvas):
            canvas = Canvas(size=canvas, output=canvas)
        size = canvas.size
        streams = SeedStreams.from_seed(config.seed, self.device)
        targets = build_targets(loop.guide, prompt_spec(config), steps=config.steps, size=size, streams=streams,
                                canvas=canvas)
        for note in targets.notes:
            yield Notice(note)
        edit = None
        if canvas.mask is not None:
            assert canvas.base is not None
            factor = self.vqgan.downsample_factor
            kept = encode_pixels(self.vqgan, canvas.base)  # (1, C, h, w)
            cells = canvas.cells(factor)[None, None]  # (1, 1, h, w)
            latent = kept
            if config.edit.mask_fill == "random":
                fill = varied_start(lambda generator: random_codes(self.vqgan, kept.shape[-2:], generator),
                                    streams.generator, config.init.variation_seed, config.init.variation_strength)
                latent = torch.where(cells.to(kept.device), fill.to(kept), kept)
            edit = ImageEdit(canvas.base, canvas.mask[None, None], cells, kept, canvas.output)
        elif config.init.init == "prior":
            if self.prior is None:
                raise ConfigError("init=prior needs a pipeline loaded with a prior (models.prior).")
            init, factor = config.init, self.vqgan.downsample_factor
            codes = yield from prior_codes(self.prior, (size[1] // factor, size[0] // factor),
                                           SamplingSettings(init.prior_temperature, init.prior_top_k, init.prior_top_p),
                                           torch.Generator(self.device).manual_seed(config.seed), init.prior_class)
            latent = self.vqgan.indices_to_latent(codes)
        else:
            init = config.init
            latent = varied_start(lambda generator: initial_latent(self.vqgan, init.init, size, generator,
                                                                   init.init_image, init.init_latent),
                                  streams.generator, init.variation_seed, init.variation_strength)
        return loop.add_image(latent, targets, streams, config.optim, edit=edit)

    def _events(self, config: GenerationConfig, clip_weights: list[float], state: RunState) -> Iterator[Event]:
        check_reproducible(config, self.device)
        with deterministic(self.device, config.deterministic), wrap_around(self.vqgan, config.edit.seamless):
            yield from self._optimised(config, clip_weights, state)

    def _optimised(self, config: GenerationConfig, clip_weights: list[float], state: RunState) -> Iterator[Event]:
        started = time.perf_counter()
        if config.models.identity not in (self.models.identity, self.requested.identity):
            yield Notice("the config names other models than this pipeline holds; "
                         f"using {describe_models(self.models)}.")
        # 1. Check inputs and resolve what the config left open.
        canvas = plan_canvas(config, self.vqgan.downsample_factor, self.device)
        for notice in canvas.notes:
            yield Notice(notice)
        size = canvas.size
        state.config.update(size=list(edited_size(config, canvas)))
        seed_everything(config.seed)
        # 2. The loop: prompt targets (once, without gradients) and the initial latent.
        loop = self.new_loop(config, clip_weights)
        yield from self.start_image(loop, config, canvas)
        state.decode = lambda: loop.decode()[0]
        state.latent = lambda: loop.latents()[:1].cpu()
        prepared = time.perf_counter()
        # 3. Exactly `steps` steps.
        yield from optimise(loop, config.steps, state, save_every=config.output.save_every,
                            what=f"at {size[0]}x{size[1]} with {config.cutouts.cutn} cutouts")
        final = loop.decode()[0]
        finished = time.perf_counter()
        timings = {"prepare": prepared - started, "optimise": finished - prepared, "total": finished - started,
                   "steps_per_second": config.steps / max(finished - prepared, 1e-9)}
        done = Done(images=(final,), config=dict(state.config), seed=config.seed, timings=timings)
        yield (yield from finish_with_upscale(done, upscale_of(config), self.bench.upscaler, self.load_seconds))

    def _clip_weights(self, config: GenerationConfig) -> tuple[list[float], ModelsConfig]:
        """Loss weights of the loaded CLIP models: the config's where it names the same models."""
        asked = config.models.clip_models
        mine = self.models.clip_models
        specs = asked if [c.identity for c in asked] == [c.identity for c in mine] else mine
        return [spec.weight for spec in specs], dataclasses.replace(self.models, clip_models=tuple(specs))


def describe_models(models: ModelsConfig) -> str:
    """``vqgan_imagenet_f16_16384.ckpt with ViT-B-32/openai``, for messages."""
    clips = ", ".join(f"{c.model}/{c.pretrained}" for c in models.clip_models)
    return f"{Path(models.vqgan).name} with {clips}"
