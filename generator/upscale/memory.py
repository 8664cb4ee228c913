"""How large a tile fits: the memory free on the device and what the network needs per pixel.

A tile's peak memory is estimated as :data:`PEAK_FACTOR` times the widest activation the
network makes (measured once per upscaler by a forward pass over a small probe, in values per
input pixel) times the tile's area with its context. On CUDA the free memory is what
``torch.cuda.mem_get_info`` reports for the upscaler's own GPU, capped by this process's memory
fraction (a shared server, a fractional Ray GPU), plus what torch's allocator holds but does
not use; on the CPU it is the available RAM (psutil, else ``/proc/meminfo``). Only a share of
it is planned for, since other programs (and other jobs of a web server) need some.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from generator.devices import cuda_free_bytes

# A layer's input and output plus the temporaries around them (RRDBNet's concatenations, the
# residual upsampling) stay under four times the widest activation.
PEAK_FACTOR = 4
CUDA_SHARE = 0.8
CPU_SHARE = 0.5
PROBE_SIDE = 16
MEMINFO = Path("/proc/meminfo")


def free_bytes(device: torch.device) -> int | None:
    """Memory a tile may use on ``device`` (before the planning share), or None when unknown."""
    if device.type == "cuda":
        return cuda_free_bytes(device) + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        import psutil  # optional: not a dependency of the project
    except ImportError:
        return _meminfo_available()
    return int(psutil.virtual_memory().available)


def _meminfo_available() -> int | None:
    try:
        lines = MEMINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # the file counts kB
    return None


def widest_activation(model: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                      device: torch.device, side: int) -> float:
    """Values per input pixel of the largest tensor any layer of ``model`` outputs while
    ``forward`` (which runs it) upscales one float32 ``side`` x ``side`` probe on ``device``."""
    widest = [0]

    def record(module: torch.nn.Module, inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            widest.append(output.numel())

    handles = [module.register_forward_hook(record) for module in model.modules()]
    try:
        with torch.inference_mode():
            output = forward(torch.zeros(1, 3, side, side, device=device).contiguous(memory_format=torch.channels_last))
    finally:
        for handle in handles:
            handle.remove()
    return max(*widest, output.numel()) / (side * side)


def tile_bytes(side: int, pad: int, values_per_pixel: float, element_size: int) -> int:
    """Estimated peak memory of one ``side``-pixel core tile with ``pad`` pixels of context."""
    return int(PEAK_FACTOR * values_per_pixel * element_size * (side + 2 * pad) ** 2)


def largest_tile(free: int, share: float, pad: int, values_per_pixel: float, element_size: int,
                 multiple_of: int) -> int:
    """The largest core side (a multiple of ``multiple_of``) whose tile fits ``share`` of ``free`` bytes; 0 if none."""
    budget = free * share / (PEAK_FACTOR * values_per_pixel * element_size)
    side = int(math.isqrt(max(int(budget), 0))) - 2 * pad
    return max(side // multiple_of * multiple_of, 0)
