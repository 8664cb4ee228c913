"""Deterministic random weights for a given key -> shape table.

The parity goldens (``make_taming_goldens.py``) and the tests that check them build the same
weights from the same seed, so only the key table and the outputs need to be committed.
"""

from __future__ import annotations

import math

import torch


def seeded_state_dict(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Random float32 tensors for every key, drawn in sorted key order from ``seed``.

    Convolution and linear weights are scaled by 1/sqrt(fan_in) and norm weights sit near 1,
    so activations stay of order one through a deep random network.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = list(shapes[key])
        values = torch.randn(shape, generator=generator)
        leaf = key.rsplit(".", 1)[-1]
        if "norm" in key and leaf == "weight":
            values = 1.0 + 0.1 * values
        elif leaf == "bias":
            values = 0.05 * values
        elif leaf == "weight" and len(shape) >= 2 and not key.startswith("quantize.embed"):
            values = values / math.sqrt(math.prod(shape[1:]))
        state[key] = values
    return state


def seeded_image(size: int, seed: int) -> torch.Tensor:
    """A (1, 3, size, size) image in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=generator) * 2 - 1
