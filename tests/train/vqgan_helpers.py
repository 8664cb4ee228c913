"""Pieces the VQGAN training tests share: generated images, a narrow architecture, settings."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from generator.train.vqgan_settings import VQGANTrainSettings
from tests.factories import tiny_vqgan_config, upstream_vqgan_yaml, write_yaml

PALETTE = [(230, 60, 50), (40, 90, 200), (250, 210, 60), (30, 160, 90), (245, 245, 240), (25, 25, 35)]


def write_images(folder: Path, count: int = 24, size: int = 48, seed: int = 0) -> Path:
    """``count`` PNGs of rectangles and ellipses in six colours (flat shapes a tiny VQGAN can learn)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for index in range(count):
        image = Image.new("RGB", (size, size), rng.choice(PALETTE))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x0, y0 = rng.randrange(-8, size), rng.randrange(-8, size)
            box = (x0, y0, x0 + rng.randrange(10, 30), y0 + rng.randrange(10, 30))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=rng.choice(PALETTE))
        image.save(folder / f"{index:03d}.png")
    return folder


def architecture(**overrides: Any) -> dict[str, Any]:
    """The tests' tiny VQGAN (factor 2, GroupNorm of 4) with 64 codes of width 8."""
    values = {"n_embed": 64, "z_channels": 8, "embed_dim": 8, **overrides}
    return tiny_vqgan_config(**values).to_dict()


def write_architecture_yaml(path: Path, **overrides: Any) -> Path:
    """:func:`architecture` as an upstream model yaml (for ``--model YAML``)."""
    return write_yaml(upstream_vqgan_yaml(tiny_vqgan_config(**{"n_embed": 64, "z_channels": 8, "embed_dim": 8,
                                                                **overrides})), path)


def settings(data: Path, out: Path, **overrides: Any) -> VQGANTrainSettings:
    """Fast CPU settings: 16-pixel crops, batches of 4, a small discriminator, no LPIPS."""
    values: dict[str, Any] = dict(
        data=str(data), architecture=architecture(), size=16, steps=4, batch_size=4, lr=2e-3, seed=0,
        precision="fp32", device="cpu", out=str(out), log_every=1, sample_every=1000, save_every=1000,
        disc_start=1000, disc_layers=2, disc_ndf=8, perceptual_weight=0.0)
    values.update(overrides)
    return VQGANTrainSettings(**values)


def write_lpips_weights(folder: Path, seed: int = 0) -> None:
    """Random LPIPS weights in their release formats: ``vgg.pth`` (the five linear layers) and
    torchvision's ``vgg16-397923af.pth`` (a VGG16 state dict; only ``features`` matters)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(seed)
    features = make_layers(cfgs["D"])
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{key}": value for key, value in features.state_dict().items()},
               folder / "vgg16-397923af.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))},
               folder / "vgg.pth")
