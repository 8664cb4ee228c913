"""Device choice, precision, seeding and determinism.

One seed drives every random draw: Python's ``random``, NumPy, and each image's
:class:`SeedStreams` (an explicit generator, plus the states that torch's CPU and CUDA
default generators take while that image's cutouts are augmented by kornia). On the same
device the same seed gives the same pixels, whether an image is made alone or in a batch. On CUDA, cuDNN autotuning
is off and deterministic algorithms are requested; kornia's warping augmentations (affine,
perspective, rotation, elastic, thin-plate) still use ``grid_sample``, whose CUDA backward is
not deterministic, so leave them out where bitwise-identical GPU runs matter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from generator.errors import ConfigError

logger = logging.getLogger(__name__)


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """``cuda`` when available, else the CPU with a warning; an explicit request is checked."""
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            _prepare_cublas()
            return torch.device("cuda")
        logger.warning("no CUDA GPU found: running on the CPU, which is much slower")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {requested} was asked for but no CUDA GPU is available; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {requested} does not exist (this machine has {torch.cuda.device_count()} GPUs); "
                "pick another index."
            )
        _prepare_cublas()
    elif device.type != "cpu":
        raise ConfigError(f"device {requested} is not supported; use cpu or cuda.")
    return device


def _prepare_cublas() -> None:
    """cuBLAS gives deterministic results only with this workspace setting, read when CUDA
    starts; set it (unless the user did) when a run chooses CUDA, not at import."""
    if not torch.cuda.is_initialized():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for full float32.

    ``auto`` is bf16 on GPUs that support it, else fp16, and float32 on the CPU (CPU autocast
    is slower than float32 for these models). Half precision on the CPU falls back to float32.
    """
    if device.type != "cuda" or precision == "fp32":
        if precision in ("bf16", "fp16") and device.type != "cuda":
            logger.info("precision %s is for GPUs; using float32 on the CPU", precision)
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for ``dtype``, or nothing when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA), make CUDA deterministic, and return a CPU
    generator for the pipeline's own draws."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


@dataclass
class SeedStreams:
    """The random streams of one image, so that it comes out the same alone or in a batch.

    ``generator`` (on the CPU) draws the initial latent and the crop geometry. kornia's
    augmentations and the cutout noise draw from torch's global generators; while this
    image's cutouts are made (:meth:`active`) those hold this image's own states, which are
    saved afterwards and the previous states restored.
    """

    seed: int
    device: torch.device
    generator: torch.Generator
    cpu_state: torch.Tensor
    device_state: torch.Tensor | None = None

    @classmethod
    def from_seed(cls, seed: int, device: torch.device) -> SeedStreams:
        """Fresh streams: each state is what ``torch.manual_seed(seed)`` would give."""
        device_state = torch.Generator(device).manual_seed(seed).get_state() if device.type == "cuda" else None
        return cls(seed, device, torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed).get_state(),
                   device_state)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this image's states torch's global ones for the duration of the block."""
        cuda = self.device_state is not None
        saved_cpu = torch.get_rng_state()
        saved_device = torch.cuda.get_rng_state(self.device) if cuda else None
        torch.set_rng_state(self.cpu_state)
        if cuda:
            torch.cuda.set_rng_state(self.device_state, self.device)
        try:
            yield
        finally:
            self.cpu_state = torch.get_rng_state()
            torch.set_rng_state(saved_cpu)
            if cuda:
                self.device_state = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(saved_device, self.device)


def auto_size(device: torch.device) -> tuple[int, int]:
    """Default image size for a device: 512 on GPUs with 10 GB or more, 384 from 6 GB, else 256."""
    if device.type != "cuda":
        return (256, 256)
    total = torch.cuda.get_device_properties(device).total_memory
    if total >= 10 * 2**30:
        return (512, 512)
    if total >= 6 * 2**30:
        return (384, 384)
    return (256, 256)
