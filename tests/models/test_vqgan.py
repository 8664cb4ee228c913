"""Behaviour of models/vqgan.py on tiny random models."""

from __future__ import annotations

import pytest
import torch

from models.vqgan import VQGAN, VQGANConfig, nearest_code_indices
from tests.factories import tiny_vqgan


@pytest.mark.parametrize("quantizer", ["vq", "gumbel"])
def test_shapes_follow_the_downsampling_factor(quantizer: str) -> None:
    model = tiny_vqgan(quantizer=quantizer, ch_mult=(1, 2, 2))
    assert model.downsample_factor == 4
    x = torch.rand(2, 3, 24, 40) * 2 - 1
    z = model.encode(x)
    assert z.shape == (2, 4, 6, 10)
    z_q, indices, z_st = model.quantize(z)
    assert z_q.shape == z.shape and z_st.shape == z.shape
    assert indices.shape == (2, 6, 10) and indices.dtype == torch.int64
    assert model.decode(z_q).shape == (2, 3, 24, 40)


@pytest.mark.parametrize("quantizer", ["vq", "gumbel"])
def test_decode_indices_equals_decode_of_quantized(quantizer: str) -> None:
    model = tiny_vqgan(quantizer=quantizer)
    with torch.no_grad():
        z = model.encode(torch.rand(1, 3, 32, 32) * 2 - 1)
        z_q, indices, _ = model.quantize(z)
        assert torch.equal(model.indices_to_latent(indices), z_q)
        assert torch.equal(model.decode_indices(indices), model.decode(z_q))


def test_quantized_vectors_are_the_nearest_codebook_rows() -> None:
    model = tiny_vqgan()
    z = torch.randn(1, 4, 5, 7)
    z_q, indices, _ = model.quantize(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.cdist(flat, model.codebook).argmin(dim=1).view(1, 5, 7)
    assert torch.equal(indices, brute)
    assert torch.equal(z_q[0, :, 2, 3], model.codebook[indices[0, 2, 3]])


def test_nearest_code_indices_is_independent_of_chunking() -> None:
    codebook = torch.randn(70000, 3)  # (1 << 24) // 70000 = 239 rows per chunk -> several chunks
    z = torch.randn(1, 3, 20, 30)
    expected = torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 3), codebook).argmin(dim=1).view(1, 20, 30)
    assert torch.equal(nearest_code_indices(z, codebook), expected)


def test_straight_through_gradient_reaches_the_latent() -> None:
    model = tiny_vqgan()
    z = torch.randn(1, 4, 8, 8, requires_grad=True)
    _, _, z_st = model.quantize(z)
    image = model.decode(z_st)
    image.square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    # the forward value is the quantised latent (up to the rounding of z + (z_q - z))
    torch.testing.assert_close(z_st.detach(), model.quantize(z.detach()).z_q, rtol=0, atol=1e-6)


def test_gumbel_encoding_picks_the_argmax_code() -> None:
    model = tiny_vqgan(quantizer="gumbel")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        h = model.quant_conv(model.encoder(x))
        expected = model.quantize.proj(h).argmax(dim=1)
        assert torch.equal(model.encode_to_indices(x), expected)
        assert torch.equal(model.encode(x), model.indices_to_latent(expected))


def test_encode_is_deterministic() -> None:
    model = tiny_vqgan(quantizer="gumbel")
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(model.encode_to_indices(x), model.encode_to_indices(x))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(quantizer="lfq"), "quantizer must be one of"),
        (dict(double_z=True), "KL autoencoder"),
        (dict(ch=10), "not divisible by norm_num_groups"),
        (dict(quantizer="gumbel", embed_dim=8), "embed_dim == z_channels"),
        (dict(ch_mult=()), "ch_mult"),
    ],
)
def test_invalid_configs_are_rejected(overrides: dict, message: str) -> None:
    values = dict(ch=8, ch_mult=(1, 2), z_channels=4, embed_dim=4, n_embed=16, norm_num_groups=4)
    values.update(overrides)
    with pytest.raises(ValueError, match=message):
        VQGANConfig(**values)


def test_config_round_trips_through_a_plain_dict() -> None:
    config = VQGANConfig(ch_mult=[1, 2], attn_resolutions=[8], ch=32, z_channels=8, embed_dim=8)
    assert config.ch_mult == (1, 2)
    assert VQGANConfig(**config.to_dict()) == config
    assert config.to_dict()["ch_mult"] == [1, 2]


def test_attention_sits_where_the_training_resolution_says() -> None:
    model = VQGAN(VQGANConfig())  # official f16 layout
    names = {k.rsplit(".", 2)[0] for k in model.state_dict() if ".attn" in k and k.endswith("q.weight")}
    assert names == {
        "encoder.down.4.attn.0", "encoder.down.4.attn.1", "encoder.mid.attn_1",
        "decoder.mid.attn_1", "decoder.up.4.attn.0", "decoder.up.4.attn.1", "decoder.up.4.attn.2",
    }


def test_attention_gets_contiguous_inputs_in_any_memory_format(monkeypatch) -> None:
    # The fused attention kernels (flash, memory-efficient) take only contiguous q/k/v; with a
    # channels_last model (as on CUDA) strided views would fall back to the O(N^2) math path.
    import models.vqgan as vqgan_module

    seen: list[bool] = []
    attention = vqgan_module.F.scaled_dot_product_attention

    def record(q, k, v, *args, **kwargs):
        seen.append(all(t.is_contiguous() for t in (q, k, v)))
        return attention(q, k, v, *args, **kwargs)

    monkeypatch.setattr(vqgan_module.F, "scaled_dot_product_attention", record)
    model = tiny_vqgan().to(memory_format=torch.channels_last)
    z = torch.randn(2, model.config.embed_dim, 8, 8).contiguous(memory_format=torch.channels_last)
    plain = tiny_vqgan()
    assert torch.allclose(model.decode(model.quantize(z).z_q), plain.decode(plain.quantize(z).z_q), atol=1e-5)
    assert seen and all(seen)
