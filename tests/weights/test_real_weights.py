"""The official weights, where present in the checkout's weights/ folder (``python -m generator
download``); skipped otherwise. They check what tiny random models cannot: reconstructions, CLIP
semantics, real upscaler seams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.config import ModelsConfig, UpscaleConfig
from generator.weights import store

pytestmark = pytest.mark.weights
WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def _require(name: str) -> Path:
    path = WEIGHTS / store.get(name).filename
    if not path.is_file():
        pytest.skip(f"{path.name} is not in weights/ (python -m generator download {name})")
    return path


def _smooth_image(size: int = 256) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([xs, ys, (xs + ys) / 2])[None]  # (1, 3, H, W) in [0, 1]


def test_official_vqgan_reconstructs_an_image() -> None:
    from generator.decoder.loader import load_vqgan
    from models.vqgan import VQGANConfig

    path = _require(ModelsConfig().vqgan)
    vqgan = load_vqgan(path, VQGANConfig(**store.REGISTRY[ModelsConfig().vqgan].config))
    image = _smooth_image()
    with torch.no_grad():
        rebuilt = vqgan.decode_indices(vqgan.encode_to_indices(image * 2 - 1)).add(1).div(2).clamp(0, 1)
    psnr = -10 * torch.log10(torch.mean((rebuilt - image) ** 2))
    assert psnr > 22


def test_openai_clip_prefers_the_right_caption() -> None:
    from generator.text_to_image.loader import load_clip

    _require("clip_vit_b_32_openai")
    clip = load_clip("ViT-B-32", "openai", weights_dir=WEIGHTS, offline=True)
    red = torch.zeros(1, 3, clip.input_size, clip.input_size)
    red[:, 0] = 1.0
    texts = clip.encode_text(["a plain red square", "a plain blue square"])
    with torch.no_grad():
        scores = clip.encode_image(red) @ texts.T
    assert scores[0, 0] > scores[0, 1]


def test_realesrgan_x4plus_tiles_have_no_visible_seams() -> None:
    from generator.upscale.loader import load_upscaler
    from generator.upscale.tiles import run_to_end, upscale_pixels

    _require(UpscaleConfig().upscale_model)
    upscaler = load_upscaler(UpscaleConfig().upscale_model, weights_dir=WEIGHTS, offline=True)
    rng = np.random.default_rng(0)
    noise = Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8))
    photo = np.asarray(noise.resize((96, 80), Image.BICUBIC))
    pixels = torch.from_numpy(photo.transpose(2, 0, 1).copy()).float()[None] / 255
    tiled = run_to_end(upscale_pixels(upscaler, pixels, tile=40, precision="fp32"))
    whole = run_to_end(upscale_pixels(upscaler, pixels, tile=0, precision="fp32"))
    assert ((tiled - whole).abs() * 255).max() <= 2.0
