"""Tiny ESRGAN-family networks saved as Real-ESRGAN releases are: ``{'params_ema': state}``
(RRDBNet, with the new-style key names conv_first / body.N.rdbK.convJ / conv_up1 ...) and
``{'params': state}`` (SRVGGNetCompact, keys body.N)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact


def compact_state(seed: int = 0, *, num_feat: int = 4, num_conv: int = 2, upscale: int = 2) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = Compact(num_feat=num_feat, num_conv=num_conv, upscale=upscale)
    return {k: v.clone() for k, v in model.state_dict().items()}


def rrdb_state(seed: int = 0, *, num_feat: int = 8, num_blocks: int = 1, scale: int = 4) -> dict[str, torch.Tensor]:
    """A random RRDBNet state dict in Real-ESRGAN's key layout (growth channels 32)."""
    generator = torch.Generator().manual_seed(seed)
    in_channels = {4: 3, 2: 12, 1: 48}[scale]  # x2/x1 models pixel-unshuffle their input
    growth = 32

    def conv(out: int, inp: int) -> dict[str, torch.Tensor]:
        return {"weight": torch.randn(out, inp, 3, 3, generator=generator) / (3 * inp**0.5),
                "bias": torch.randn(out, generator=generator) * 0.01}

    layers = {"conv_first": conv(num_feat, in_channels)}
    for block in range(num_blocks):
        for rdb in (1, 2, 3):
            for index in range(1, 6):
                out = growth if index < 5 else num_feat
                layers[f"body.{block}.rdb{rdb}.conv{index}"] = conv(out, num_feat + (index - 1) * growth)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        layers[name] = conv(num_feat, num_feat)
    layers["conv_last"] = conv(3, num_feat)
    return {f"{name}.{part}": tensor for name, params in layers.items() for part, tensor in params.items()}


def save_upscaler(state: dict[str, torch.Tensor], path: Path, container: str | None = "params_ema") -> Path:
    """Save as ``{container: state}`` (.pth) or bare (.safetensors / container None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({container: state} if container else state, path)
    return path
