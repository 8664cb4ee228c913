"""Seamless tiles: a first stage whose convolutions pad circularly along chosen axes.

Inside :func:`wrap_around`, every zero-padded convolution of the model pads by wrapping the
feature map around along ``x`` (width), ``y`` (height) or both, so the left edge of an image
continues its right edge (and the top its bottom). The VQGAN's other layers (nearest
upsampling, group norms, attention without positions) do not see edges at all, so a latent
decodes to an image that tiles without a seam. The model is restored on leaving the block;
models are shared between runs, so the change never outlives the run that asked for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _wrapped_forward(conv: nn.Conv2d, axes: str) -> Any:
    pad_h, pad_w = conv.padding  # type: ignore[misc] - a zero-padded Conv2d with numeric padding

    def forward(features: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        features = F.pad(features, (pad_w, pad_w, 0, 0), mode="circular" if "x" in axes else "constant")
        features = F.pad(features, (0, 0, pad_h, pad_h), mode="circular" if "y" in axes else "constant")
        return F.conv2d(features, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

    return forward


@contextlib.contextmanager
def wrap_around(model: Any, axes: str) -> Iterator[None]:
    """Make ``model``'s zero-padded 2-D convolutions wrap around along ``axes`` (``x``, ``y`` or
    ``xy``; empty: nothing changes) for the duration of the block.

    ``model`` is a first stage that is a torch module (every decoder this project loads is);
    anything else cannot tile and is refused with a ValueError.
    """
    if not axes:
        yield
        return
    if not isinstance(model, nn.Module):
        raise ValueError(f"{type(model).__name__} is not a torch module, so it cannot be made to tile")
    patched = []
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple) \
                and any(conv.padding):
            conv.forward = _wrapped_forward(conv, axes)  # type: ignore[method-assign]
            patched.append(conv)
    try:
        yield
    finally:
        for conv in patched:
            del conv.forward
