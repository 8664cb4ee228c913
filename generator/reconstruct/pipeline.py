"""The reconstruction: encode an image to codebook indices, decode them, and measure the loss.

Shapes: the image is resized to (W, H), multiples of the VQGAN's factor f; it becomes an
(h, w) = (H / f, W / f) grid of codes, decoded back to (3, H, W).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import torch

from generator.decoder.protocol import Decoder
from generator.events import Done, Event, Notice, Progress
from generator.io.images import open_image, pil_to_tensor, tensor_to_pil
from generator.reconstruct.config import ReconstructConfig
from generator.reconstruct.mode import RECONSTRUCT
from generator.runs import GenerationRun, RunState
from generator.workbench import Workbench


def planned_size(image_size: tuple[int, int], config: ReconstructConfig, factor: int) -> tuple[int, int]:
    """(width, height) to reconstruct at: the config's size, or the image's with its longer side
    at most ``max_side``; rounded down to multiples of ``factor`` (at least one cell)."""
    if config.size is not None:
        width, height = config.size
    else:
        width, height = image_size
        scale = min(1.0, config.max_side / max(width, height))
        width, height = round(width * scale), round(height * scale)
    return max(factor, width // factor * factor), max(factor, height // factor * factor)


def psnr(original: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (inf when identical)."""
    error = torch.mean((original.float() - reconstruction.float()) ** 2).item()
    return math.inf if error == 0 else 10 * math.log10(1 / error)


class Reconstructor:
    """A loaded VQGAN plus the reconstruction runs that use it."""

    def __init__(self, vqgan: Decoder, *, config: ReconstructConfig | None = None):
        self.vqgan = vqgan
        self.models = config or ReconstructConfig(image="-")

    @classmethod
    def from_workbench(cls, config: ReconstructConfig, bench: Workbench) -> Reconstructor:
        """The reconstructor of the VQGAN ``config`` names, from ``bench`` (loaded once, kept)."""
        return cls(bench.vqgan(config.vqgan, config.vqgan_config), config=config)

    def run(self, config: ReconstructConfig) -> GenerationRun:
        """Start a reconstruction; nothing happens until it is iterated."""
        config = config.with_seed()
        state = RunState(mode=RECONSTRUCT.name, label=f"{config.vqgan} reconstruction", config=config.to_dict(),
                         total=2)
        return GenerationRun(self._events(config, state), state, self.vqgan.codebook.device)

    def _events(self, config: ReconstructConfig, state: RunState) -> Iterator[Event]:
        started = time.perf_counter()
        image = open_image(config.image, what="the image to reconstruct")
        factor = self.vqgan.downsample_factor
        size = planned_size(image.size, config, factor)
        if size != image.size:
            yield Notice(f"the image is {image.size[0]}x{image.size[1]}; reconstructing it at {size[0]}x{size[1]} "
                         f"(multiples of the VQGAN's factor {factor}).")
        state.config.update(size=list(size))
        device = self.vqgan.codebook.device
        pixels = pil_to_tensor(image.convert("RGB").resize(size)).to(device)  # (1, 3, H, W) in [0, 1]
        with torch.no_grad():
            indices = self.vqgan.encode_to_indices(pixels * 2 - 1)  # (1, h, w)
            state.step = 1
            yield Progress("encode", 1, 2, time.perf_counter() - started)
            decoded = (self.vqgan.decode_indices(indices).clamp(-1, 1) + 1) / 2  # (1, 3, H, W)
        state.step = 2
        yield Progress("decode", 2, 2, time.perf_counter() - started)
        original, reconstruction = tensor_to_pil(pixels), tensor_to_pil(decoded)
        state.decode = lambda: reconstruction
        timings = {"total": time.perf_counter() - started, "psnr": psnr(pixels, decoded),
                   "codes_used": float(indices.unique().numel()), "codes": float(self.vqgan.n_codes)}
        yield Done(images=(reconstruction, original), config=dict(state.config), seed=int(config.seed or 0),
                   timings=timings)
