"""Device choice, precision, seeding and determinism.

One seed drives every random draw: Python's ``random``, NumPy, torch's CPU and CUDA default
generators (which kornia's augmentations use) and the explicit generators the pipeline
creates. On the same device the same seed gives the same pixels. On CUDA, cuDNN autotuning
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

import numpy as np
import torch

from generator.errors import ConfigError

# cuBLAS needs this before the CUDA context exists to give deterministic results.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

logger = logging.getLogger(__name__)


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """``cuda`` when available, else the CPU with a warning; an explicit request is checked."""
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
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
    elif device.type != "cpu":
        raise ConfigError(f"device {requested} is not supported; use cpu or cuda.")
    return device


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


def random_seed() -> int:
    """A fresh seed for runs that did not ask for one (recorded in their output)."""
    return random.SystemRandom().randrange(2**31)


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
