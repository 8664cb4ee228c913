"""A parity tolerance tight enough to see a wrong GroupNorm eps.

The goldens in tests/data (from the ORIGINAL taming-transformers classes, see
tests/parity/make_taming_goldens.py) are matched by models/vqgan.py to float noise: measured on
CPU, a max abs difference of 6e-6..1.1e-5 and an RMS of 1.5e-6..1.9e-6 per output. With GroupNorm
eps 1e-5 instead of taming's 1e-6 the same outputs are off by a max of 3.6e-5..6.4e-5 (RMS
8e-6..1.5e-5): inside test_vqgan_parity.py's 1e-4 tolerances, outside these.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.vqgan import VQGAN
from tests.parity.official import GOLDENS, KEYS, OFFICIAL
from tests.parity.seeded import seeded_state_dict

MAX_ABS = 2e-5  # float noise reaches ~1.1e-5, eps 1e-5 at least 3.6e-5
MAX_RMS = 4e-6  # float noise ~1.9e-6, eps 1e-5 at least 8e-6


def _differences(got: torch.Tensor, golden: torch.Tensor) -> tuple[float, float]:
    """The largest and the root-mean-square absolute difference."""
    difference = (got.float() - golden.float()).abs()
    return float(difference.max()), float(difference.pow(2).mean().sqrt())


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_outputs_match_the_original_architecture_to_float_noise(name: str) -> None:
    model = VQGAN(OFFICIAL[name])
    model.load_state_dict(seeded_state_dict(KEYS[name], 1234), strict=True)
    model.eval()
    with torch.no_grad():
        latent = model.quant_conv(model.encoder(GOLDENS["input"]))
        decoded = model.decode_indices(GOLDENS[f"{name}.indices"])
    for what, got in (("latent", latent), ("decoded", decoded)):
        worst, rms = _differences(got, GOLDENS[f"{name}.{what}"])
        assert worst <= MAX_ABS, f"{name} {what}: max abs difference {worst:.2e} > {MAX_ABS:.0e}"
        assert rms <= MAX_RMS, f"{name} {what}: rms difference {rms:.2e} > {MAX_RMS:.0e}"


def test_every_group_norm_uses_taming_eps() -> None:
    """taming's ``Normalize``: GroupNorm(32 groups, eps=1e-6, affine) everywhere."""
    model = VQGAN(OFFICIAL["vqgan_imagenet_f16_16384"])
    norms = [module for module in model.modules() if isinstance(module, nn.GroupNorm)]
    assert len(norms) > 20
    assert {(norm.eps, norm.num_groups, norm.affine) for norm in norms} == {(1e-6, 32, True)}
