"""models/gpt.py: official key layout, parity with the original minGPT, and the KV cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.gpt import GPT, GPTConfig, KVCache
from tests.parity.seeded import seeded_state_dict

DATA = Path(__file__).resolve().parents[1] / "data"
KEYS = json.loads((DATA / "official_gpt_keys.json").read_text())
GOLDENS = load_file(str(DATA / "taming_gpt_parity.safetensors"))
RELEASED = {
    "ffhq_transformer": GPTConfig(vocab_size=1024, block_size=256, n_layer=24, n_head=16, n_embd=1664),
    "faceshq_transformer": GPTConfig(vocab_size=1024, block_size=512, n_layer=24, n_head=16, n_embd=1024),
}
SMALL = {
    "small": GPTConfig(vocab_size=50, block_size=40, n_layer=2, n_head=4, n_embd=32),
    "small_unmasked": GPTConfig(vocab_size=50, block_size=40, n_layer=2, n_head=4, n_embd=32, n_unmasked=6),
}


@pytest.mark.parametrize("name", list(RELEASED))
def test_released_layouts_have_the_official_keys_and_shapes(name: str) -> None:
    with torch.device("meta"):
        model = GPT(RELEASED[name])
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == KEYS[name]
    assert sum(k.endswith("attn.mask") for k in KEYS[name]) == 24


def _small(name: str) -> GPT:
    shapes = KEYS[name]
    model = GPT(SMALL[name]).eval()
    state = seeded_state_dict({k: s for k, s in shapes.items() if not k.endswith("attn.mask")}, 4321)
    state.update({k: v for k, v in model.state_dict().items() if k.endswith("attn.mask")})
    model.load_state_dict(state, strict=True)
    return model


@pytest.mark.parametrize("name", list(SMALL))
def test_logits_equal_the_original_implementation(name: str) -> None:
    model = _small(name)
    with torch.no_grad():
        logits = model(GOLDENS[f"{name}.idx"])
    torch.testing.assert_close(logits, GOLDENS[f"{name}.logits"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(SMALL))
def test_cached_decoding_equals_the_original_forward_with_past(name: str) -> None:
    model = _small(name)
    idx = GOLDENS[f"{name}.idx"]
    cache = KVCache(model.config, batch=2, max_length=30, device="cpu")
    with torch.no_grad():
        chunks = [model(idx[:, :8], cache=cache)]
        chunks += [model(idx[:, p : p + 1], cache=cache) for p in range(8, 30)]
    torch.testing.assert_close(torch.cat(chunks, dim=1), GOLDENS[f"{name}.incremental_logits"], rtol=1e-4, atol=1e-4)
    assert cache.length == 30


def test_cached_equals_recomputed_and_last_only() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=24, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = torch.randint(20, (3, 24))
    cache = KVCache(model.config, batch=3, max_length=24, device="cpu")
    with torch.no_grad():
        full = model(idx)
        chunks = [model(idx[:, :5], cache=cache)]
        chunks += [model(idx[:, p : p + 1], cache=cache) for p in range(5, 24)]
        cached = torch.cat(chunks, dim=1)
        torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(idx, last_only=True), full[:, -1:], rtol=1e-6, atol=1e-6)


def test_block_size_is_enforced() -> None:
    model = GPT(GPTConfig(vocab_size=8, block_size=4, n_layer=1, n_head=1, n_embd=4))
    with pytest.raises(ValueError, match="exceed the block size of 4; use the sliding window"):
        model(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds block_size=4"):
        KVCache(model.config, batch=1, max_length=5, device="cpu")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="not divisible by n_head"):
        GPTConfig(vocab_size=8, block_size=4, n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="n_unmasked"):
        GPTConfig(vocab_size=8, block_size=4, n_unmasked=5)
