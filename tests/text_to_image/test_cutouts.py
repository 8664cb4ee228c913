"""Cutouts: geometry, exact resampling, augmentations by name, determinism."""

from __future__ import annotations

import pytest
import torch

from generator.errors import ConfigError
from generator.text_to_image.cutouts import (
    AUGMENTATIONS,
    MakeCutouts,
    canonical_augments,
    resample_matrices,
)


def test_resampling_at_scale_one_is_an_exact_crop() -> None:
    image = torch.rand(1, 3, 20, 30)
    rows = resample_matrices(torch.tensor([4]), torch.tensor([10]), 20, 10)
    cols = resample_matrices(torch.tensor([7]), torch.tensor([10]), 30, 10)
    crop = rows[:, None] @ image @ cols.transpose(1, 2)[:, None]
    assert torch.equal(crop[0], image[0, :, 4:14, 7:17])


def test_downsampling_by_two_uses_an_antialiasing_triangle_and_ignores_outside() -> None:
    matrix = resample_matrices(torch.tensor([0]), torch.tensor([16]), 16, 8)[0]
    # output pixel 3 is centred between source pixels 6 and 7; the filter is two pixels wide
    assert torch.allclose(matrix[3, 5:9], torch.tensor([0.125, 0.375, 0.375, 0.125]))
    assert matrix[3, :5].sum() == 0 and matrix[3, 9:].sum() == 0
    cropped = resample_matrices(torch.tensor([3]), torch.tensor([6]), 16, 3)[0]
    assert torch.all(cropped[:, :3] == 0) and torch.all(cropped[:, 9:] == 0)
    assert torch.allclose(cropped.sum(dim=1), torch.ones(3))


def test_constant_images_stay_constant_at_every_scale() -> None:
    image = torch.full((1, 3, 70, 45), 0.25)
    cutouts = MakeCutouts(32, 16)(image, torch.Generator().manual_seed(0))
    assert cutouts.shape == (16, 3, 32, 32)
    assert torch.allclose(cutouts, torch.full_like(cutouts, 0.25), atol=1e-6)


@pytest.mark.parametrize("cut_pow", [0.5, 1.0, 3.0])
def test_geometry_stays_inside_the_image(cut_pow: float) -> None:
    maker = MakeCutouts(24, 500, cut_pow=cut_pow)
    sizes, ys, xs = maker.geometry(40, 64, torch.Generator().manual_seed(1))
    assert sizes.min() >= 24 and sizes.max() <= 40
    assert (ys >= 0).all() and (ys + sizes <= 40).all()
    assert (xs >= 0).all() and (xs + sizes <= 64).all()


def test_cut_pow_shifts_the_size_distribution() -> None:
    small = MakeCutouts(24, 2000, cut_pow=3.0).geometry(200, 200, torch.Generator().manual_seed(2))[0]
    large = MakeCutouts(24, 2000, cut_pow=0.5).geometry(200, 200, torch.Generator().manual_seed(2))[0]
    assert small.float().mean() < large.float().mean() - 40


def test_every_augmentation_runs_and_keeps_gradients() -> None:
    image = torch.rand(1, 3, 48, 48, requires_grad=True)
    for name in AUGMENTATIONS:
        torch.manual_seed(0)
        maker = MakeCutouts(32, 4, augments=[name], noise_fac=0.1)
        out = maker(image, torch.Generator().manual_seed(0))
        assert out.shape == (4, 3, 32, 32), name
        out.sum().backward()
        assert image.grad is not None and torch.isfinite(image.grad).all(), name
        image.grad = None


def test_same_seeds_give_identical_cutouts() -> None:
    image = torch.rand(1, 3, 64, 64)

    def cut() -> torch.Tensor:
        torch.manual_seed(5)
        maker = MakeCutouts(32, 8, augments=["affine", "jitter", "erasing"], noise_fac=0.1)
        return maker(image, torch.Generator().manual_seed(5))

    assert torch.equal(cut(), cut())


def test_augmentation_names_and_aliases() -> None:
    names = canonical_augments(["Af", "pe", "colour", "affine", " Er "])
    assert names == ("affine", "perspective", "jitter", "erasing")
    with pytest.raises(ConfigError, match="unknown augmentation 'perspektive'; did you mean perspective"):
        canonical_augments(["perspektive"])


class _DegenerateWarp(torch.nn.Module):
    """A warp whose second cutout comes out NaN, as a perspective with collapsed corners does:
    its sampling weights are NaN, so its backward sends NaN to the input too."""

    def forward(self, cutouts: torch.Tensor) -> torch.Tensor:
        weights = torch.ones(cutouts.shape[0], 1, 1, 1)
        weights[1] = float("nan")
        return cutouts.flip(-1) * weights


def test_a_degenerate_augmentation_leaves_its_cutout_unaugmented_and_the_gradient_finite() -> None:
    image = torch.rand(1, 3, 48, 48, requires_grad=True)
    maker = MakeCutouts(32, 4, augments=["flip"])
    maker.augment = torch.nn.Sequential(_DegenerateWarp())
    out = maker(image, torch.Generator().manual_seed(0))
    plain = MakeCutouts(32, 4)(image, torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], plain[1])  # the degenerate one, unaugmented
    assert torch.equal(out[0], plain[0].flip(-1))  # the others, augmented
    out.sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


class _OnePixelNaN(torch.nn.Module):
    """An augmentation that spoils one pixel of one channel of cutout 2, and flips the rest."""

    def forward(self, cutouts: torch.Tensor) -> torch.Tensor:
        out = cutouts.flip(-1)
        out[2, 1, 5, 7] = float("inf")
        return out


def test_a_cutout_with_one_non_finite_pixel_is_caught_like_a_wholly_non_finite_one() -> None:
    image = torch.rand(1, 3, 48, 48, requires_grad=True)
    maker = MakeCutouts(32, 4, augments=["flip"])
    maker.augment = torch.nn.Sequential(_OnePixelNaN())
    out = maker(image, torch.Generator().manual_seed(0))
    plain = MakeCutouts(32, 4)(image, torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    assert torch.equal(out[2], plain[2])  # the whole cutout goes unaugmented, not just its pixel
    assert torch.equal(out[0], plain[0].flip(-1))
    out.sum().backward()
    assert torch.isfinite(image.grad).all()
