"""Tiled, memory-bounded super-resolution of any image, as a generator of progress events.

The image is cut into ``tile``-pixel cores; each core is run through the network with
``tile_pad`` pixels of context on every side (clamped at the image border) and only the
core's output is pasted into the result. Where the context covers the network's receptive
field (compact SRVGG networks), the tiled result equals the untiled one. The result canvas
lives on the CPU, so GPU memory does not grow with the image. Half precision is used on CUDA
where the network supports it, with a fall back to float32 for any tile whose output is not
finite; running out of GPU memory retries with smaller tiles. Alpha, greyscale and 16-bit
inputs come back as they went in.

Use with ``result = yield from upscale_image(...)`` (the events are forwarded and the
upscaled :class:`ImageData` is the return value), or :func:`run_to_end`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch
from PIL import Image

from generator.config import UpscaleConfig
from generator.devices import autocast
from generator.errors import OutOfMemoryError
from generator.events import Done, Event, Notice, Progress, relay
from generator.io.image_data import ImageData
from generator.upscale.loader import Upscaler, UpscalerCache

MIN_TILE = 32
RETRY_TILE = 512


def tile_cores(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(y, x, h, w) of every core tile in raster order; ``tile`` 0 means one tile."""
    if tile <= 0:
        return [(0, 0, height, width)]
    return [(y, x, min(tile, height - y), min(tile, width - x))
            for y in range(0, height, tile) for x in range(0, width, tile)]


def _run_tiles(upscaler: Upscaler, pixels: torch.Tensor, tile: int, pad: int, dtype: torch.dtype | None,
               started: float) -> Generator[Event, None, torch.Tensor]:
    """One pass over the tiles; the (1, 3, H*s, W*s) float32 CPU result is the return value."""
    _, _, height, width = pixels.shape
    scale = upscaler.scale
    canvas = torch.empty(1, 3, height * scale, width * scale, dtype=torch.float32)  # on the CPU
    cores = tile_cores(height, width, tile)
    for index, (y, x, h, w) in enumerate(cores, start=1):
        y0, x0 = max(y - pad, 0), max(x - pad, 0)
        y1, x1 = min(y + h + pad, height), min(x + w + pad, width)
        region = pixels[:, :, y0:y1, x0:x1].to(upscaler.device)
        output = _forward(upscaler, region, dtype)
        if dtype is not None and not torch.isfinite(output).all():
            yield Notice(f"{upscaler.name} gave non-finite values in {str(dtype).removeprefix('torch.')}; "
                         "using float32 from here on.")
            dtype = None
            output = _forward(upscaler, region, None)
        oy, ox = (y - y0) * scale, (x - x0) * scale
        canvas[:, :, y * scale:(y + h) * scale, x * scale:(x + w) * scale] = \
            output[:, :, oy:oy + h * scale, ox:ox + w * scale].float().cpu()
        yield Progress("upscale", index, len(cores), time.perf_counter() - started)
    return canvas


def _forward(upscaler: Upscaler, region: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    with torch.inference_mode(), autocast(upscaler.device, dtype):
        return upscaler.descriptor(region)


def upscale_pixels(upscaler: Upscaler, pixels: torch.Tensor, *, tile: int = 256, tile_pad: int | None = None,
                   precision: str = "auto") -> Generator[Event, None, torch.Tensor]:
    """(1, 3, H, W) float32 in [0, 1] -> (1, 3, H*s, W*s) float32 on the CPU, by tiles.

    Raises:
        OutOfMemoryError: the device ran out of memory even with the smallest tiles.
    """
    multiple = upscaler.multiple_of
    tile = -(-tile // multiple) * multiple if tile > 0 else 0
    pad = upscaler.tile_pad if tile_pad is None else -(-tile_pad // multiple) * multiple
    dtype = None if precision == "fp32" else upscaler.half_dtype()
    started = time.perf_counter()
    while True:
        try:
            return (yield from _run_tiles(upscaler, pixels, tile, pad, dtype, started))
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            current = tile or max(pixels.shape[2:])
            smaller = min(RETRY_TILE, current // 2) if tile == 0 else tile // 2
            if smaller < MIN_TILE:
                raise OutOfMemoryError(
                    f"the GPU ran out of memory upscaling even with {MIN_TILE}-pixel tiles; "
                    "use --device cpu or a smaller image."
                ) from None
            yield Notice(f"out of GPU memory with {current}-pixel tiles; retrying with {smaller}.")
            tile = smaller


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]  # (1, C, H, W)


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per-channel LANCZOS resize of float pixels (H, W, C) to (width, height)."""
    channels = [np.asarray(Image.fromarray(array[..., c], mode="F").resize(size, Image.Resampling.LANCZOS))
                for c in range(array.shape[2])]
    return np.clip(np.stack(channels, axis=2), 0, 1)


def upscale_image(upscaler: Upscaler, image: ImageData, *, scale: float | None = None, tile: int = 256,
                  tile_pad: int | None = None, precision: str = "auto",
                  alpha: str = "network") -> Generator[Event, None, ImageData]:
    """Upscale an image by the network's factor, then resize to ``scale`` if it differs.

    Colour goes through the network; greyscale is run as RGB and returned as grey (ITU-R 601
    luma); alpha goes through the network as well (``alpha="network"``, Real-ESRGAN's default)
    or is resized (``"resize"``). The bit depth is kept.
    """
    pixels = image.pixels.astype(np.float32)
    colour = pixels[..., :3] if image.channels >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    upscaled = (yield from upscale_pixels(upscaler, _to_tensor(colour), tile=tile, tile_pad=tile_pad,
                                          precision=precision))[0].permute(1, 2, 0).numpy()
    height, width = upscaled.shape[:2]
    parts = [upscaled if image.channels >= 3 else upscaled @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)]
    if image.has_alpha:
        mask = pixels[..., -1:]
        if alpha == "network":
            through = yield from upscale_pixels(upscaler, _to_tensor(np.repeat(mask, 3, axis=2)), tile=tile,
                                                tile_pad=tile_pad, precision=precision)
            parts.append(through[0].mean(dim=0, keepdim=True).permute(1, 2, 0).numpy())
        else:
            parts.append(_resize(mask, (width, height)))
    result = np.clip(np.concatenate(parts, axis=2), 0, 1)
    if scale and abs(scale - upscaler.scale) > 1e-6:
        target = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
        result = _resize(result, target)
    return ImageData(result.astype(np.float32), image.bits)


def upscale_with(upscaler: Upscaler, image: ImageData, config: UpscaleConfig) -> Generator[Event, None, ImageData]:
    """:func:`upscale_image` with the settings of an :class:`UpscaleConfig` (scale 0: the model's)."""
    return upscale_image(upscaler, image, scale=config.upscale or None, tile=config.upscale_tile,
                         tile_pad=config.upscale_tile_pad, precision=config.upscale_precision,
                         alpha=config.upscale_alpha)


def run_to_end(events: Generator[Event, None, ImageData],
               on_event: Callable[[Event], None] | None = None) -> ImageData:
    """Drain an upscale generator, passing each event to ``on_event``; return its image."""
    relayed = relay(events, on_event or (lambda event: None))
    while True:
        try:
            next(relayed)
        except StopIteration as stop:
            return stop.value



def upscale_results(images: Sequence[Image.Image], config: UpscaleConfig,
                    cache: UpscalerCache) -> Generator[Event, None, tuple[Image.Image, ...]]:
    """Upscale a run's results as ``config`` asks; progress counts tiles over all images."""
    upscaler = cache.get(config.upscale_model, config.upscale_denoise)
    results = []
    for index, image in enumerate(images):

        def overall(event: Event, index: int = index) -> Event:  # one bar for all images (same tiles)
            if isinstance(event, Progress):
                return Progress("upscale", index * event.total + event.step, len(images) * event.total, event.elapsed)
            return event

        upscaled = yield from relay(upscale_with(upscaler, ImageData.from_pil(image), config), overall)
        results.append(upscaled.to_pil())
    return tuple(results)


def finish_with_upscale(done: Done, config: UpscaleConfig, cache: UpscalerCache,
                        load_seconds: float = 0.0) -> Generator[Event, None, Done]:
    """A pipeline's :class:`Done`, completed with upscaled copies when ``config`` asks for them."""
    timings = {"load": load_seconds, **done.timings}
    upscaled: tuple[Image.Image, ...] = ()
    if config.upscale:
        started = time.perf_counter()
        upscaled = yield from upscale_results(done.images, config, cache)
        timings["upscale"] = time.perf_counter() - started
    return Done(done.images, done.config, done.seed, timings, upscaled)
