"""Tiled, memory-bounded super-resolution of any image, as a generator of progress events.

The image is cut into ``tile``-pixel cores (``tile`` 0: the whole image where it fits in the
device's free memory, else the largest tiles that do); each core is run through the network
with ``tile_pad`` pixels of context on every side (clamped at the image border) and only the
core's output is written into the preallocated result. Where the context covers the network's
receptive field (compact SRVGG networks), the tiled result equals the untiled one: exactly in
float32; in bf16 within one bf16 step (2**-7), since oneDNN may pick other kernels for other
tile widths. The result lives on the CPU, so GPU memory does not grow with the image.

``precision="auto"`` is fp16 on CUDA where the network supports it (else bf16 on GPUs that run
it natively) and bf16 on CPUs with bf16 units (see :meth:`Upscaler.half_dtype`). The network's
output is checked for finiteness before it is clamped to [0, 1]; a half precision tile whose
output is not finite is run again in float32, as is the rest of the image. Running out of memory
retries with smaller tiles. Alpha, greyscale and 16-bit inputs come back as they went in.

``seamless`` (``x``, ``y`` or ``xy``) upscales a tile that wraps around along those axes (a
seamless texture): the image is continued periodically by the context width (``tile_pad``; 0
wraps nothing) on the wrapped sides, so the network sees across the wrap seam as it sees inside
the image, and only the image's own cores are written, so the result keeps its size (scale x
the input) and costs no extra tiles. With a context that covers the receptive field, the result
equals the middle copy of the upscale of the image tiled around itself, so its copies tile
without a seam; resizes to another ``scale`` wrap around too.

Use with ``result = yield from upscale_image(...)`` (the events are forwarded and the
upscaled :class:`ImageData` is the return value), or :func:`run_to_end`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from generator.config import UpscaleConfig
from generator.devices import autocast, describe_device, is_out_of_memory, release_memory
from generator.errors import OutOfMemoryError
from generator.events import Done, Event, Notice, Progress, relay
from generator.io.image_data import ImageData
from generator.upscale.loader import Upscaler
from generator.upscale.memory import CPU_SHARE, CUDA_SHARE, free_bytes, largest_tile

MIN_TILE = 32
RETRY_TILE = 512
FALLBACK_FREE_BYTES = 2 * 2**30  # planned for where the free memory cannot be read


@dataclass(frozen=True)
class TilePlan:
    """How an image goes through the network.

    Attributes:
        tile: core tile side in pixels (0: the whole image at once).
        pad: context around each core, in input pixels.
        dtype: autocast dtype (None: float32).
        tiles: how many tiles that makes.
    """

    tile: int
    pad: int
    dtype: torch.dtype | None
    tiles: int

    @property
    def precision(self) -> str:
        return str(self.dtype or torch.float32).removeprefix("torch.")


def tile_cores(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(y, x, h, w) of every core tile in raster order; ``tile`` 0 means one tile."""
    if tile <= 0:
        return [(0, 0, height, width)]
    return [(y, x, min(tile, height - y), min(tile, width - x))
            for y in range(0, height, tile) for x in range(0, width, tile)]


def memory_tile(upscaler: Upscaler, height: int, width: int, pad: int) -> int:
    """The tile for ``tile=0``: the whole image (0) where it fits the memory free on the
    upscaler's device, else the largest tile that does (at least :data:`MIN_TILE`). Planned
    with 4 bytes a value whatever the precision (autocast keeps some tensors in float32, and
    running out of RAM on the CPU ends the process rather than raising); on the CPU the result
    canvas is taken off the free memory first."""
    device = upscaler.device
    free = free_bytes(device)
    free = FALLBACK_FREE_BYTES if free is None else free
    share = CUDA_SHARE if device.type == "cuda" else CPU_SHARE
    if device.type == "cpu":
        free -= height * width * upscaler.scale**2 * 3 * 4
    fits = largest_tile(max(free, 0), share, pad, upscaler.widest_activation, 4, upscaler.multiple_of)
    if fits >= max(height, width):
        return 0
    return max(fits, -(-MIN_TILE // upscaler.multiple_of) * upscaler.multiple_of)


def plan_tiles(upscaler: Upscaler, height: int, width: int, *, tile: int = 256, tile_pad: int | None = None,
               precision: str = "auto") -> TilePlan:
    """The tiles and precision :func:`upscale_pixels` uses for an image of ``height`` x ``width``.

    ``tile`` > 0 is kept (rounded up to the network's multiple); 0 is the whole image where
    it fits in memory, else the largest tiles that do (:func:`memory_tile`).
    """
    multiple = upscaler.multiple_of
    pad = upscaler.tile_pad if tile_pad is None else -(-tile_pad // multiple) * multiple
    dtype = upscaler.autocast_dtype(precision)
    tile = -(-tile // multiple) * multiple if tile > 0 else memory_tile(upscaler, height, width, pad)
    if tile >= max(height, width):
        tile = 0
    return TilePlan(tile, pad, dtype, len(tile_cores(height, width, tile)))


def wrap_pad(pixels: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """(1, C, H, W) -> (1, C, H + 2*rows, W + 2*columns): the image continued periodically, as
    if tiled, by ``rows`` above and below and ``columns`` left and right (a margin wider than the
    image repeats it)."""
    _, _, height, width = pixels.shape
    above = torch.arange(-rows, height + rows) % height  # (H + 2*rows,) source row of each row
    left = torch.arange(-columns, width + columns) % width  # (W + 2*columns,)
    return pixels[:, :, above][:, :, :, left]


def wrap_margins(seamless: str, pad: int) -> tuple[int, int]:
    """(rows, columns) of wrap-around context for a ``seamless`` value: ``pad`` along each
    wrapped axis (``y``: rows, ``x``: columns), 0 along the others."""
    return (pad if "y" in seamless else 0), (pad if "x" in seamless else 0)


def _forward(upscaler: Upscaler, region: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The unclamped network output for one tile, in ``dtype`` under autocast (None: float32)."""
    with autocast(upscaler.device, dtype):
        return upscaler.unclamped(region)


def _run_tile(upscaler: Upscaler, source: torch.Tensor, canvas: torch.Tensor, core: tuple[int, int, int, int],
              pad: int, dtype: torch.dtype | None, margins: tuple[int, int] = (0, 0)) -> bool:
    """Upscale one core (with its context) into ``canvas``; False, writing nothing, if the
    output of a half precision run is not finite in the core (checked before clamping).
    ``source`` holds the image ``margins`` (rows, columns) in from its top left corner (the
    wrap-around margins of a seamless upscale); ``core`` and ``canvas`` are the image's own."""
    y, x, h, w = core
    _, _, height, width = source.shape
    scale = upscaler.scale
    sy, sx = y + margins[0], x + margins[1]  # the core's corner in source pixels
    y0, x0 = max(sy - pad, 0), max(sx - pad, 0)
    y1, x1 = min(sy + h + pad, height), min(sx + w + pad, width)
    with torch.inference_mode():
        region = source[:, :, y0:y1, x0:x1].contiguous(memory_format=torch.channels_last)
        output = _forward(upscaler, region, dtype)
        oy, ox = (sy - y0) * scale, (sx - x0) * scale
        kept = output[:, :, oy:oy + h * scale, ox:ox + w * scale]
        if dtype is not None and not bool(torch.isfinite(kept).all()):
            return False
        canvas[:, :, y * scale:(y + h) * scale, x * scale:(x + w) * scale].copy_(kept.clamp_(0, 1))
    return True


def _run_tiles(upscaler: Upscaler, pixels: torch.Tensor, plan: TilePlan, started: float,
               seamless: str = "") -> Generator[Event, None, torch.Tensor]:
    """One pass over the tiles; the (1, 3, H*s, W*s) float32 CPU result is the return value."""
    _, _, height, width = pixels.shape
    margins = wrap_margins(seamless, plan.pad)
    scale = upscaler.scale
    # (1, 3, H*s, W*s) on the CPU, laid out as (H*s, W*s, 3): the network's channels_last output
    # copies in directly, and the caller's (H, W, C) view of it needs no copy.
    canvas = torch.empty(1, height * scale, width * scale, 3).permute(0, 3, 1, 2)
    # (1, 3, H + 2*rows, W + 2*columns): the image amid its wrap-around margins (none: the image)
    source = (wrap_pad(pixels, *margins) if any(margins) else pixels).to(upscaler.device)
    dtype = plan.dtype
    cores = tile_cores(height, width, plan.tile)
    for index, core in enumerate(cores, start=1):
        if not _run_tile(upscaler, source, canvas, core, plan.pad, dtype, margins):
            yield Notice(f"{upscaler.name} gave non-finite values in {str(dtype).removeprefix('torch.')}; "
                         "using float32 from here on.")
            dtype = None
            _run_tile(upscaler, source, canvas, core, plan.pad, dtype, margins)
        yield Progress("upscale", index, len(cores), time.perf_counter() - started)
    return canvas


def upscale_pixels(upscaler: Upscaler, pixels: torch.Tensor, *, tile: int = 256, tile_pad: int | None = None,
                   precision: str = "auto", seamless: str = "") -> Generator[Event, None, torch.Tensor]:
    """(1, 3, H, W) float32 in [0, 1] -> (1, 3, H*s, W*s) float32 in [0, 1] on the CPU, by tiles.

    The tiles and precision are :func:`plan_tiles`'s. Running out of memory on the device
    retries with tiles of half the side (with a :class:`Notice`) down to :data:`MIN_TILE`.
    ``seamless`` (``x``, ``y``, ``xy``; empty: off) gives the tiles on the wrapped sides the
    image's other side as context (the context width, ``tile_pad``, of it), as if tiled.

    Raises:
        OutOfMemoryError: the device ran out of memory even with the smallest tiles.
        ConfigError: a precision the network does not support.
    """
    _, _, height, width = pixels.shape
    plan = plan_tiles(upscaler, height, width, tile=tile, tile_pad=tile_pad, precision=precision)
    device, multiple = upscaler.device, upscaler.multiple_of
    started = time.perf_counter()
    while True:
        try:
            return (yield from _run_tiles(upscaler, pixels, plan, started, seamless))
        except (torch.OutOfMemoryError, RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
        # Out of memory. Handled here, outside the except block, whose traceback holds the failed
        # tile's tensors until it is left.
        release_memory(device)
        current = plan.tile or max(height, width)
        smaller = (min(RETRY_TILE, current // 2) if plan.tile == 0 else current // 2) // multiple * multiple
        if smaller < MIN_TILE:
            advice = "free memory on it or use --device cpu" if device.type == "cuda" else \
                "close other programs or upscale a smaller image"
            raise OutOfMemoryError(f"{describe_device(device)} ran out of memory upscaling a {width}x{height} image "
                                   f"even with {current}-pixel tiles; {advice}.")
        yield Notice(f"{describe_device(device)} ran out of memory with {current}-pixel tiles; retrying with "
                     f"{smaller} (a smaller --tile avoids the retry).")
        plan = TilePlan(smaller, plan.pad, plan.dtype, len(tile_cores(height, width, smaller)))


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]  # (1, C, H, W)


def _lanczos_reach(side: int, resized: int) -> int:
    """Source pixels a LANCZOS (a=3) filter reads beyond an edge when ``side`` becomes ``resized``."""
    return max(3, -(-3 * side // resized)) + 1


def _resize(array: np.ndarray, size: tuple[int, int], seamless: str = "") -> np.ndarray:
    """Per-channel LANCZOS resize of float pixels (H, W, C) to (width, height); along the axes
    in ``seamless`` the filter reads across the wrap seam (the image continued periodically)."""
    height, width = array.shape[:2]
    rows = _lanczos_reach(height, size[1]) if "y" in seamless else 0
    columns = _lanczos_reach(width, size[0]) if "x" in seamless else 0
    box = None
    if rows or columns:  # (H + 2*rows, W + 2*columns, C), the image amid its wrap-around margins
        array = np.take(np.take(array, np.arange(-rows, height + rows), axis=0, mode="wrap"),
                        np.arange(-columns, width + columns), axis=1, mode="wrap")
        box = (columns, rows, columns + width, rows + height)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(array[..., c]), mode="F")
                           .resize(size, Image.Resampling.LANCZOS, box=box))
                for c in range(array.shape[2])]
    return np.clip(np.stack(channels, axis=2), 0, 1)


def upscale_image(upscaler: Upscaler, image: ImageData, *, scale: float | None = None, tile: int = 256,
                  tile_pad: int | None = None, precision: str = "auto",
                  alpha: str = "network", seamless: str = "") -> Generator[Event, None, ImageData]:
    """Upscale an image by the network's factor, then resize to ``scale`` if it differs.

    Colour goes through the network; greyscale is run as RGB and returned as grey (ITU-R 601
    luma); alpha goes through the network as well (``alpha="network"``, Real-ESRGAN's default)
    or is resized (``"resize"``). The bit depth is kept. An RGB result is the network's output
    itself (no copy). ``seamless`` (``x``, ``y``, ``xy``) wraps the network's context and the
    resizes around those axes (see :func:`upscale_pixels`); the size is the same either way.
    """
    pixels = image.pixels.astype(np.float32, copy=False)
    colour = pixels[..., :3] if image.channels >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    upscaled = (yield from upscale_pixels(upscaler, _to_tensor(colour), tile=tile, tile_pad=tile_pad,
                                          precision=precision, seamless=seamless))[0].permute(1, 2, 0).numpy()
    height, width = upscaled.shape[:2]
    parts = [upscaled if image.channels >= 3 else upscaled @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)]
    if image.has_alpha:
        mask = pixels[..., -1:]
        if alpha == "network":
            through = yield from upscale_pixels(upscaler, _to_tensor(np.repeat(mask, 3, axis=2)), tile=tile,
                                                tile_pad=tile_pad, precision=precision, seamless=seamless)
            parts.append(through[0].mean(dim=0, keepdim=True).permute(1, 2, 0).numpy())
        else:
            parts.append(_resize(mask, (width, height), seamless))
    if len(parts) == 1 and image.channels >= 3:
        result = parts[0]  # clamped to [0, 1] already
    else:
        result = np.concatenate(parts, axis=2)
        np.clip(result, 0, 1, out=result)
    if scale and abs(scale - upscaler.scale) > 1e-6:
        target = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
        result = _resize(result, target, seamless)
    return ImageData(result.astype(np.float32, copy=False), image.bits)


def upscale_with(upscaler: Upscaler, image: ImageData, config: UpscaleConfig) -> Generator[Event, None, ImageData]:
    """:func:`upscale_image` with the settings of an :class:`UpscaleConfig` (scale 0: the model's)."""
    return upscale_image(upscaler, image, scale=config.upscale or None, tile=config.upscale_tile,
                         tile_pad=config.upscale_tile_pad, precision=config.upscale_precision,
                         alpha=config.upscale_alpha, seamless=config.upscale_seamless)


def run_to_end(events: Generator[Event, None, ImageData],
               on_event: Callable[[Event], None] | None = None) -> ImageData:
    """Drain an upscale generator, passing each event to ``on_event``; return its image."""
    relayed = relay(events, on_event or (lambda event: None))
    while True:
        try:
            next(relayed)
        except StopIteration as stop:
            return stop.value



UpscalerSource = Callable[[str, float | None], Upscaler]
"""Gives the upscaler of a name and denoise strength (``Workbench.upscaler``: loaded once, kept)."""


def upscale_results(images: Sequence[Image.Image], config: UpscaleConfig,
                    upscalers: UpscalerSource) -> Generator[Event, None, tuple[Image.Image, ...]]:
    """Upscale a run's results as ``config`` asks; progress counts tiles over all images."""
    upscaler = upscalers(config.upscale_model, config.upscale_denoise)
    results = []
    for index, image in enumerate(images):

        def overall(event: Event, index: int = index) -> Event:  # one bar for all images (same tiles)
            if isinstance(event, Progress):
                return Progress("upscale", index * event.total + event.step, len(images) * event.total, event.elapsed)
            return event

        upscaled = yield from relay(upscale_with(upscaler, ImageData.from_pil(image), config), overall)
        results.append(upscaled.to_pil())
    return tuple(results)


def finish_with_upscale(done: Done, config: UpscaleConfig, upscalers: UpscalerSource,
                        load_seconds: float = 0.0) -> Generator[Event, None, Done]:
    """A pipeline's :class:`Done`, completed with upscaled copies when ``config`` asks for them."""
    timings = {"load": load_seconds, **done.timings}
    upscaled: tuple[Image.Image, ...] = ()
    if config.upscale:
        started = time.perf_counter()
        upscaled = yield from upscale_results(done.images, config, upscalers)
        timings["upscale"] = time.perf_counter() - started
    return Done(done.images, done.config, done.seed, timings, upscaled)
