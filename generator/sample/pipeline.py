"""Sampling images from a transformer prior, as a run of events (``python -m generator sample``).

Grids the size of the training window are sampled with the key/value cache (on CUDA at batch
1 as a replayed CUDA graph); larger grids with the sliding window. Progress comes per sampled
row, a preview (the batch as a contact sheet) every ``output.save_every`` rows, and a final
:class:`Done` with every image. Finished token grids are decoded :data:`DECODE_CHUNK` images
at a time; when the device runs out of memory the images finished so far stay in
``state.images``.

Image completion keeps the first ``keep`` fraction of an image's tokens and samples the rest;
with a mask (prior inpainting) the tokens of the latent cells the mask touches are sampled and
every other one is the image's own, and the decoded samples are pasted back into the image
through the feathered mask, so pixels outside a hard mask are exactly the image's.

No autocast state is held across a ``yield``: the transformer's precision is a copy of its
weights in the run's dtype, and the VQGAN's autocast is entered only around each decode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from generator.config import SampleConfig
from generator.devices import (
    autocast,
    autocast_dtype,
    describe_device,
    is_out_of_memory,
    release_memory,
    seed_everything,
)
from generator.errors import InputError, OutOfMemoryError
from generator.events import Done, Event, Notice, Preview, Progress
from generator.io.images import contact_sheet, cover, open_image, pil_to_tensor, tensor_to_pil
from generator.io.masks import ALPHA, check_mask, cover_mask, feather, grid_mask, load_mask
from generator.runs import GenerationRun, RunState
from generator.sample.conditioning import coordinate_tokens, map_size, map_tokens, start_tokens
from generator.sample.loader import Prior
from generator.sample.mode import SAMPLE
from generator.sample.sampling import (
    SamplingSettings,
    check_grid,
    prior_dtype,
    sample_rows,
    window_length,
    window_step,
)
from generator.upscale.tiles import finish_with_upscale
from generator.weights.download import ProgressCallback
from generator.workbench import Workbench
from models.gpt import with_linear_dtype

DECODE_CHUNK = 4  # token grids decoded by the VQGAN at once


def plan_size(prior: Prior, config: SampleConfig) -> tuple[tuple[int, int], tuple[int, int], str | None]:
    """(pixel size (W, H), token grid (rows, cols), notice) for a sampling run."""
    factor = prior.vqgan.downsample_factor
    rows, cols = prior.spec.window
    map_width, map_height = map_size(config.condition) if config.condition else (0, 0)
    width, height = config.size or ((map_width, map_height) if config.condition else (cols * factor, rows * factor))
    if config.condition and config.size is not None:
        if abs(width / height - map_width / map_height) > 0.02 * map_width / map_height:
            raise InputError(
                f"the condition map is {map_width}x{map_height} but the size asked for is {width}x{height}, another "
                "shape; give a map of the same aspect ratio or leave --size out to use the map's."
            )
    size = (width // factor * factor, height // factor * factor)
    notice = None if size == (width, height) else \
        f"size {width}x{height} is not a multiple of the VQGAN's factor {factor}; using {size[0]}x{size[1]}."
    grid = (size[1] // factor, size[0] // factor)
    check_grid(prior, grid)
    return size, grid, notice


class Sampler:
    """A loaded prior plus the sampling runs that use it.

    Args:
        prior: the transformer, its VQGAN and conditioning.
        model: what the prior is (registry name or file), recorded in every output.
        bench: the workbench that owns the prior and gives the upscalers (default: a new one
            on the prior's device, for a prior built in memory).
    """

    def __init__(self, prior: Prior, *, model: str = "in-memory prior", transformer_config: str | None = None,
                 bench: Workbench | None = None):
        self.prior = prior
        self.model = model
        self.transformer_config = transformer_config
        self.load_seconds = 0.0
        self.bench = bench or Workbench(prior.device)

    @classmethod
    def from_workbench(cls, model: str, transformer_config: str | None, bench: Workbench) -> Sampler:
        """The sampler of the prior ``model`` (registry name such as ``ffhq`` or
        ``ffhq_transformer``, or a checkpoint path) from ``bench``, which loads it once."""
        before = bench.load_seconds
        name, prior = bench.prior(model, transformer_config)
        sampler = cls(prior, model=name, transformer_config=transformer_config, bench=bench)
        sampler.load_seconds = bench.load_seconds - before
        return sampler

    @classmethod
    def from_pretrained(cls, model: str = "ffhq_transformer", transformer_config: str | None = None, *,
                        device: str | torch.device | None = None, weights_dir: str | os.PathLike[str] | None = None,
                        offline: bool | None = None, progress: ProgressCallback | None = None) -> Sampler:
        """:meth:`from_workbench` with a workbench of its own (a script's one sampler)."""
        bench = Workbench(device, weights_dir=weights_dir, offline=offline, progress=progress)
        return cls.from_workbench(model, transformer_config, bench)

    @property
    def label(self) -> str:
        """What its runs are called (folder names, PNG text): ``ffhq_transformer sample``."""
        return f"{Path(self.model).stem if Path(self.model).suffix else self.model} sample"

    def run(self, config: SampleConfig) -> GenerationRun:
        """Start a sampling run; nothing happens until it is iterated. The seed is resolved here."""
        config = config.with_seed().replace(model=self.model, transformer_config=self.transformer_config)
        state = RunState(mode=SAMPLE.name, label=self.label, config=config.to_dict())
        return GenerationRun(self._events(config, state), state, self.prior.device)

    def _events(self, config: SampleConfig, state: RunState) -> Iterator[Event]:
        started = time.perf_counter()
        prior = self.prior
        # 1. Check inputs and resolve what the config left open.
        size, grid, notice = plan_size(prior, config)
        if notice:
            yield Notice(notice)
        seed = config.seed
        state.config.update(size=list(size))
        seed_everything(seed)
        generator = torch.Generator(prior.device).manual_seed(seed)
        decode_dtype = autocast_dtype(prior.device, config.precision)
        settings = SamplingSettings(config.temperature, config.top_k, config.top_p)
        edit = _completion(prior, config, size, grid)
        for note in edit.notes if edit else ():
            yield Notice(note)
        start = edit.start if edit else 0
        drawn_per_image = edit.drawn if edit else grid[0] * grid[1]
        rows_per_batch = grid[0] - start // grid[1]
        batches = [min(config.batch_size, config.n - first) for first in range(0, config.n, config.batch_size)]
        total_rows = state.total = rows_per_batch * len(batches)
        tokens_sampled, rows_done, sampling_started = 0, 0, time.perf_counter()
        gpt = with_linear_dtype(prior.gpt, prior_dtype(prior.device, config.precision))
        step = None  # the CUDA-graph step (batch 1 on CUDA): captured once, replayed by every such batch
        usable = None
        doing = "sampling"

        # 2. Sample batch by batch; every finished row is a progress step.
        out_of_memory = False
        try:
            for batch in batches:
                doing = f"sampling {_images(batch)} of {size[0]}x{size[1]}"
                cond = _condition(prior, config, size, grid, batch)
                tokens = torch.zeros(batch, *grid, dtype=torch.long, device=prior.device)
                if edit is not None:
                    tokens[:] = edit.tokens
                state.decode = lambda tokens=tokens: _sheet(prior, tokens, decode_dtype, edit)
                length = window_length(prior, cond, grid) if config.use_cache else None
                if step is None and length is not None:
                    step = window_step(gpt, batch, length)
                usable = step if step is not None and step.batch == batch else None
                for _ in sample_rows(prior, cond, tokens, start, settings, generator, config.use_cache, gpt=gpt,
                                     step=usable, keep=edit.keep if edit else None):
                    rows_done += 1
                    state.step = rows_done
                    yield Progress("sample", rows_done, total_rows, time.perf_counter() - sampling_started)
                    if config.output.save_every and rows_done % config.output.save_every == 0:
                        yield Preview("sample", rows_done, _sheet(prior, tokens, decode_dtype, edit))
                tokens_sampled += batch * drawn_per_image
                doing = f"decoding {_images(batch)} of {size[0]}x{size[1]}"
                for first in range(0, batch, DECODE_CHUNK):
                    decoded = _decode(prior, tokens[first : first + DECODE_CHUNK], decode_dtype)
                    state.images.extend(_paste(decoded, edit))
        except (torch.OutOfMemoryError, RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            out_of_memory = True  # leave the except block first: its traceback holds the failed step's tensors
        if out_of_memory:
            gpt = step = usable = None  # the half-precision weights, the graph's cache and pool
            release_memory(prior.device)
            kept = f"the {_images(len(state.images), 'finished ')} {'is' if len(state.images) == 1 else 'are'} kept; " \
                if state.images else ""
            raise OutOfMemoryError(f"{describe_device(prior.device)} ran out of memory {doing}; {kept}"
                                   "try a smaller --batch-size or --size.")
        finished = time.perf_counter()
        timings = {"sample": finished - sampling_started, "total": finished - started,
                   "tokens_per_second": tokens_sampled / max(finished - sampling_started, 1e-9)}
        done = Done(images=tuple(state.images), config=dict(state.config), seed=seed, timings=timings)
        yield (yield from finish_with_upscale(done, config.upscale, self.bench.upscaler, self.load_seconds))


def _images(count: int, adjective: str = "") -> str:
    return f"{count} {adjective}image{'' if count == 1 else 's'}"


def _condition(prior: Prior, config: SampleConfig, size: tuple[int, int], grid: tuple[int, int],
               batch: int) -> torch.Tensor:
    kind = prior.spec.conditioning
    if kind in ("coord", "segmentation", "depth") and config.class_label is not None:
        raise InputError(f"this model is conditioned on {'position' if kind == 'coord' else kind + ' maps'}, "
                         "not a class; leave --class out.")
    if kind == "coord":
        return coordinate_tokens(prior, grid, batch)
    if kind in ("segmentation", "depth"):
        if not config.condition:
            raise InputError(f"this model is conditioned on {kind} maps; give --condition MAP.png.")
        return map_tokens(prior, config.condition, size, grid, batch)
    if config.condition:
        conditioned_on = "a class" if kind == "class" else "nothing"
        raise InputError(f"this model is conditioned on {conditioned_on}, not on a map; leave --condition out.")
    return start_tokens(prior, batch, config.class_label)


@dataclass(frozen=True)
class _Completion:
    """The image a run completes or edits, at the run's size.

    Attributes:
        tokens: (H, W) the image's codes, where every sampled grid starts.
        start: the first raster position drawn.
        drawn: the positions drawn per image.
        keep: (H, W) bool, the cells kept (a mask run); None: every cell from ``start`` is drawn.
        original: the image at the run's size, which samples are pasted into (a mask run).
        blend: (h, w) float in [0, 1], the feathered mask at the run's size: the weight of the
            sample in each pixel (a mask run).
        notes: what the user should know (a mask stretched to fit).
    """

    tokens: torch.Tensor
    start: int
    drawn: int
    keep: torch.Tensor | None = None
    original: Image.Image | None = None
    blend: torch.Tensor | None = None
    notes: tuple[str, ...] = ()


def _completion(prior: Prior, config: SampleConfig, size: tuple[int, int],
                grid: tuple[int, int]) -> _Completion | None:
    """The image to complete (or to edit through ``config.mask``) at the run's size, or None."""
    if not config.complete:
        return None
    image = open_image(config.complete, what="image to complete")
    original = cover(image, size)
    if config.mask is not None:
        # Read the mask before encoding: a bad mask is refused before any model work.
        mask, notes = load_mask(config.mask, image)  # (H0, W0) at the image's own size
        mask = cover_mask(mask, size)  # (h, w), aligned with `original`
        check_mask(mask, "the mask (the image's transparency)" if config.mask == ALPHA else "the mask")
        keep = ~grid_mask(mask, prior.vqgan.downsample_factor, dilate=0).to(prior.device)  # (H, W)
        drawn = [flat for flat, kept in enumerate(keep.reshape(-1).tolist()) if not kept]
        return _Completion(_encode(prior, original), start=drawn[0], drawn=len(drawn), keep=keep,
                           original=original, blend=feather(mask, config.mask_blur), notes=tuple(notes))
    start = round(config.keep * grid[0] * grid[1])
    return _Completion(_encode(prior, original), start=start, drawn=grid[0] * grid[1] - start)


def _encode(prior: Prior, image: Image.Image) -> torch.Tensor:
    """An RGB image at the run's size -> its (H, W) tokens."""
    pixels = pil_to_tensor(image).to(prior.device)  # (1, 3, h, w) in [0, 1]
    with torch.inference_mode():
        return prior.vqgan.encode_to_indices(pixels * 2 - 1)[0]


def _paste(images: list[Image.Image], edit: _Completion | None) -> list[Image.Image]:
    """Each sample pasted into the edited image through the feathered mask:
    ``blend * sample + (1 - blend) * original``, so where the mask is 0 a pixel is the original's
    exactly (not a VQGAN round trip). Without a mask the samples as they are."""
    if edit is None or edit.blend is None or edit.original is None:
        return images
    weight = edit.blend.numpy()[..., None]  # (h, w, 1)
    original = np.asarray(edit.original, dtype=np.float32)  # (h, w, 3)
    return [Image.fromarray(np.rint(weight * np.asarray(image, dtype=np.float32) + (1 - weight) * original)
                            .clip(0, 255).astype(np.uint8), mode="RGB") for image in images]


def _decode(prior: Prior, tokens: torch.Tensor, dtype: torch.dtype | None) -> list[Image.Image]:
    """Token grids (B, H, W) -> images, in one VQGAN pass (callers bound B)."""
    with torch.inference_mode(), autocast(prior.device, dtype):
        pixels = prior.vqgan.decode_indices(tokens).float().add(1).div(2)
    return [tensor_to_pil(image) for image in pixels]


def _sheet(prior: Prior, tokens: torch.Tensor, dtype: torch.dtype | None,
           edit: _Completion | None = None) -> Image.Image:
    """The batch as one contact sheet, decoded :data:`DECODE_CHUNK` grids at a time (pasted into
    the edited image for a mask run)."""
    images = []
    for first in range(0, tokens.shape[0], DECODE_CHUNK):
        images += _paste(_decode(prior, tokens[first : first + DECODE_CHUNK], dtype), edit)
    return contact_sheet(images)

