"""Helpers shared by the upscaler tests."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch


def image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Random float32 pixels (H, W, C) in [0, 1)."""
    return np.random.default_rng(seed).random((height, width, channels), dtype=np.float32)


def pixels(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Random (1, 3, H, W) float32 pixels in [0, 1)."""
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def events_of(generator: Generator) -> tuple[list, object]:
    """Every event a generator yields, and its return value."""
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value
