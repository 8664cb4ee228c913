"""models/vqgan.py against the original taming-transformers architecture.

The key tables and outputs in tests/data were produced by the ORIGINAL ``VQModel`` and
``GumbelVQ`` classes (see tests/parity/make_taming_goldens.py) for the official f16-16384,
f16-1024 and Gumbel f8 architectures with seeded random weights. Here the same seeded
weights are loaded into our modules with ``strict=True`` and the outputs are compared.
"""

from __future__ import annotations

import pytest
import torch

from generator.decoder.loader import infer_vqgan_config
from models.vqgan import VQGAN
from tests.parity.official import GOLDENS, KEYS, OFFICIAL
from tests.parity.seeded import seeded_state_dict


def test_official_key_tables_have_the_published_sizes() -> None:
    assert len(KEYS["vqgan_imagenet_f16_16384"]) == 343
    assert len(KEYS["vqgan_imagenet_f16_1024"]) == 343
    assert len(KEYS["vqgan_gumbel_f8"]) == 301


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_layout_loads_strictly(name: str) -> None:
    model = VQGAN(OFFICIAL[name])
    state = {k: torch.zeros(shape) for k, shape in KEYS[name].items()}
    model.load_state_dict(state, strict=True)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == KEYS[name]


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_config_inferred_from_official_shapes_equals_the_official_config(name: str) -> None:
    state = {k: torch.empty(shape) for k, shape in KEYS[name].items()}
    assert infer_vqgan_config(state, source=name) == OFFICIAL[name]


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_outputs_equal_the_original_architecture(name: str) -> None:
    model = VQGAN(OFFICIAL[name])
    model.load_state_dict(seeded_state_dict(KEYS[name], 1234), strict=True)
    model.eval()
    image = GOLDENS["input"]
    with torch.no_grad():
        latent = model.quant_conv(model.encoder(image))
        indices = model.encode_to_indices(image)
        decoded = model.decode_indices(GOLDENS[f"{name}.indices"])
    torch.testing.assert_close(latent, GOLDENS[f"{name}.latent"], rtol=0, atol=2e-5)
    assert torch.equal(indices, GOLDENS[f"{name}.indices"])
    torch.testing.assert_close(decoded, GOLDENS[f"{name}.decoded"], rtol=0, atol=2e-5)
