"""Condition maps by value: what ``map_tokens`` hands the prior's condition VQGAN for a
segmentation map (exact one-hot channels) and for depth maps (8-bit, 16-bit and taming's
RGBA-packed float32, each scaled to [-1, 1])."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.sample.conditioning import map_tokens
from generator.sample.loader import Prior, load_prior
from tests.prior_factories import SEG_LABELS, save_tiny_prior

SIZE = (32, 32)  # the tiny priors' 16x16 window at factor 2
GRID = (16, 16)


@pytest.fixture(scope="module")
def prior_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("condition-priors")
    return {kind: save_tiny_prior(directory, kind) for kind in ("segmentation", "depth")}


def _fed(prior_files: dict, kind: str, path: Path, size: tuple[int, int] = SIZE) -> torch.Tensor:
    """The pixels map_tokens gives the condition VQGAN for ``path`` (its tokens are checked too)."""
    prior: Prior = load_prior(prior_files[kind].checkpoint)
    assert prior.cond_vqgan is not None
    encode = prior.cond_vqgan.encode_to_indices
    seen: list[torch.Tensor] = []

    def recording(pixels: torch.Tensor) -> torch.Tensor:
        seen.append(pixels.detach().clone())
        return encode(pixels)

    prior.cond_vqgan.encode_to_indices = recording  # type: ignore[method-assign]
    tokens = map_tokens(prior, path, size, GRID, batch=2)
    (pixels,) = seen
    with torch.inference_mode():
        expected = encode(pixels)
    assert tokens.shape == (2, *GRID) and torch.equal(tokens[0], expected[0]) and torch.equal(tokens[1], expected[0])
    return pixels


def _labels() -> np.ndarray:
    """Every class, in stripes and blocks, with no class on a regular grid."""
    rows, cols = np.indices((SIZE[1], SIZE[0]))
    return ((rows // 3 + 2 * (cols // 5)) % SEG_LABELS).astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "P"])
def test_a_segmentation_map_becomes_exact_one_hot_channels(prior_files: dict, tmp_path: Path, mode: str) -> None:
    labels = _labels()
    image = Image.fromarray(labels, mode="L")
    if mode == "P":
        image = image.convert("P")
        image.putpalette([v for i in range(256) for v in ((i * 40) % 256, (i * 90) % 256, (i * 10) % 256)])
        assert np.array_equal(np.asarray(image), labels)  # a palette image's pixels are the class ids
    image.save(tmp_path / "labels.png")
    pixels = _fed(prior_files, "segmentation", tmp_path / "labels.png")
    assert pixels.shape == (1, SEG_LABELS, SIZE[1], SIZE[0]) and pixels.dtype == torch.float32
    expected = np.stack([(labels == k) for k in range(SEG_LABELS)]).astype(np.float32)[None]
    assert torch.equal(pixels, torch.from_numpy(expected))  # exactly 0 and 1, the class's channel set


def test_a_smaller_segmentation_map_is_enlarged_without_mixing_classes(prior_files: dict, tmp_path: Path) -> None:
    labels = _labels()[::2, ::2]  # 16x16, enlarged 2x to the 32x32 image
    Image.fromarray(labels, mode="L").save(tmp_path / "small.png")
    pixels = _fed(prior_files, "segmentation", tmp_path / "small.png")
    enlarged = labels.repeat(2, axis=0).repeat(2, axis=1)
    expected = np.stack([(enlarged == k) for k in range(SEG_LABELS)]).astype(np.float32)[None]
    assert torch.equal(pixels, torch.from_numpy(expected))


def _ramp(low: float, high: float, middle: float) -> np.ndarray:
    """A 32x32 depth map from ``low`` to ``high`` with ``middle`` at (5, 7)."""
    values = np.linspace(low, high, SIZE[0] * SIZE[1]).reshape(SIZE[1], SIZE[0])
    values[5, 7] = middle
    return values


def _check_scaled(pixels: torch.Tensor, depth: np.ndarray) -> None:
    low, high = float(depth.min()), float(depth.max())
    assert pixels.shape == (1, 1, SIZE[1], SIZE[0]) and pixels.dtype == torch.float32
    assert float(pixels.min()) == -1.0 and float(pixels.max()) == 1.0  # nearest ends exactly at -1 and 1
    assert float(pixels[0, 0, 0, 0]) == -1.0 and float(pixels[0, 0, -1, -1]) == 1.0
    expected = (depth - low) / (high - low) * 2 - 1
    np.testing.assert_allclose(pixels[0, 0].numpy(), expected, rtol=0, atol=1e-6)


def test_an_8_bit_depth_map_is_scaled_to_minus_one_one(prior_files: dict, tmp_path: Path) -> None:
    depth = np.round(_ramp(20, 220, 120)).astype(np.uint8)
    Image.fromarray(depth, mode="L").save(tmp_path / "depth8.png")
    pixels = _fed(prior_files, "depth", tmp_path / "depth8.png")
    _check_scaled(pixels, depth.astype(np.float64))
    assert float(pixels[0, 0, 5, 7]) == 0.0  # 120 is halfway between 20 and 220


def test_a_16_bit_depth_map_keeps_its_full_range(prior_files: dict, tmp_path: Path) -> None:
    depth = np.round(_ramp(1000, 61000, 16000)).astype(np.uint16)
    Image.fromarray(depth).save(tmp_path / "depth16.png")
    assert Image.open(tmp_path / "depth16.png").mode in ("I;16", "I")  # a real 16-bit PNG
    pixels = _fed(prior_files, "depth", tmp_path / "depth16.png")
    _check_scaled(pixels, depth.astype(np.float64))
    assert float(pixels[0, 0, 5, 7]) == -0.5  # a quarter of the way from 1000 to 61000
    assert len(torch.unique(pixels)) > 600  # not squeezed through 8 bits (256 levels at most)


def test_taming_rgba_packed_float32_depth(prior_files: dict, tmp_path: Path) -> None:
    """taming-transformers stores D-RIN depth as float32 whose four bytes are the RGBA channels."""
    depth = _ramp(0.75, 12.25, 6.5).astype(np.float32)  # 6.5: halfway
    packed = np.ascontiguousarray(depth).view(np.uint8).reshape(SIZE[1], SIZE[0], 4)
    Image.fromarray(packed, mode="RGBA").save(tmp_path / "depth.png")
    pixels = _fed(prior_files, "depth", tmp_path / "depth.png")
    _check_scaled(pixels, depth.astype(np.float64))
    assert float(pixels[0, 0, 5, 7]) == 0.0
