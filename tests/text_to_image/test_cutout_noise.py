"""Per-cutout noise (``noise_fac``): each cutout gets Gaussian noise whose strength is drawn,
per cutout, uniformly from [0, noise_fac] (generator/text_to_image/cutouts.py, CutoutConfig)."""

from __future__ import annotations

import pytest
import torch

from generator.text_to_image.cutouts import MakeCutouts

CUT = 32  # 3 * 32 * 32 samples per cutout: a per-cutout std is measured to about 1.3%
CUTN = 400


def _cutouts(noise_fac: float, *, global_seed: int = 0) -> torch.Tensor:
    """Cutouts of one fixed image: the crop geometry from a seeded generator, the noise from
    torch's global stream seeded with ``global_seed``."""
    image = torch.rand(1, 3, 96, 80, generator=torch.Generator().manual_seed(7))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(global_seed)
        return MakeCutouts(CUT, CUTN, noise_fac=noise_fac)(image, torch.Generator().manual_seed(0))


def _strengths(noise_fac: float) -> torch.Tensor:
    """The std of each cutout's noise: the residual against the noiseless cutouts."""
    residual = _cutouts(noise_fac) - _cutouts(0.0)
    assert float(residual.mean()) == pytest.approx(0.0, abs=2e-3)  # zero-mean noise
    return residual.flatten(1).std(dim=1)


def test_without_noise_the_cutouts_are_noiseless_and_deterministic() -> None:
    clean = _cutouts(0.0)
    assert torch.equal(clean, _cutouts(0.0))
    assert float(clean.min()) >= 0 and float(clean.max()) <= 1  # resampled pixels of a [0, 1] image only
    assert torch.equal(clean, _cutouts(0.0, global_seed=1))  # noise_fac=0: nothing drawn from the global stream
    assert not torch.equal(_cutouts(0.1), _cutouts(0.1, global_seed=1))


@pytest.mark.parametrize("noise_fac", [0.1, 0.5])
def test_each_cutout_gets_noise_of_a_strength_drawn_uniformly_from_zero_to_noise_fac(noise_fac: float) -> None:
    strengths = _strengths(noise_fac) / noise_fac  # uniform on [0, 1] when the noise is as documented
    assert strengths.shape == (CUTN,)
    assert float(strengths.max()) <= 1.05  # never stronger than noise_fac (up to the std estimate)
    assert float(strengths.max()) >= 0.95 and float(strengths.min()) <= 0.05  # ... and the whole range is used
    assert float(strengths.mean()) == pytest.approx(0.5, abs=0.05)  # E[U(0, f)] = f / 2
    assert float(strengths.std()) == pytest.approx((1 / 12) ** 0.5, abs=0.03)  # per cutout, not one for all
    quartiles = torch.histc(strengths.clamp(0, 1), bins=4, min=0, max=1) / CUTN
    assert torch.allclose(quartiles, torch.full((4,), 0.25), atol=0.06), quartiles  # flat: uniform, not normal
    ordered = strengths.sort().values  # Kolmogorov-Smirnov distance to U(0, 1)
    ranks = torch.arange(1, CUTN + 1) / CUTN
    assert float(torch.maximum(ranks - ordered, ordered - (ranks - 1 / CUTN)).max()) < 0.08


def test_the_noise_scales_with_noise_fac() -> None:
    weak, strong = _strengths(0.1), _strengths(0.4)
    # same global stream: the same per-cutout draws, scaled four times
    torch.testing.assert_close(strong, 4 * weak, rtol=1e-4, atol=1e-6)
