"""Loading VQGANs from Lightning checkpoints, state dicts and safetensors, with or without a yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from generator.decoder.loader import infer_vqgan_config, load_vqgan, vqgan_config_from_mapping
from generator.errors import CheckpointError, ConfigError
from tests.factories import (
    save_lightning_checkpoint,
    save_tiny_vqgan,
    tiny_vqgan,
    upstream_vqgan_yaml,
    write_yaml,
)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_strict_load_from_a_lightning_checkpoint_with_loss_keys_and_unknown_classes(tmp_path: Path) -> None:
    ckpt, config_file, original = save_tiny_vqgan(tmp_path)
    model = load_vqgan(ckpt, config_file)
    assert _same_weights(model, original)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(model.encode_to_indices(x), original.encode_to_indices(x))


def test_a_yaml_beside_the_checkpoint_is_found(tmp_path: Path) -> None:
    ckpt, _, original = save_tiny_vqgan(tmp_path, name="model")
    assert load_vqgan(ckpt).config == original.config  # norm_num_groups=4 comes from the yaml


def test_gumbel_checkpoint_with_gumbelvq_target(tmp_path: Path) -> None:
    ckpt, config_file, original = save_tiny_vqgan(tmp_path, quantizer="gumbel")
    assert "GumbelVQ" in config_file.read_text()
    model = load_vqgan(ckpt, config_file)
    assert model.config.quantizer == "gumbel" and _same_weights(model, original)


def test_first_stage_of_a_transformer_checkpoint(tmp_path: Path) -> None:
    original = tiny_vqgan()
    state = {f"first_stage_model.{k}": v for k, v in original.state_dict().items()}
    state["transformer.tok_emb.weight"] = torch.randn(16, 8)
    state["transformer.blocks.0.attn.mask"] = torch.ones(1, 1, 4, 4)
    path = save_lightning_checkpoint(state, tmp_path / "last.ckpt", loss_tensors=False)
    project = {"model": {"target": "taming.models.cond_transformer.Net2NetTransformer", "params": {
        "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT", "params": {"vocab_size": 16}},
        "first_stage_config": upstream_vqgan_yaml(original.config)["model"],
        "cond_stage_config": "__is_unconditional__"}}}
    model = load_vqgan(path, write_yaml(project, tmp_path / "project.yaml"))
    assert _same_weights(model, original)


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".safetensors"])
def test_plain_state_dict_files(tmp_path: Path, suffix: str) -> None:
    original = tiny_vqgan(ch=32, ch_mult=(1, 2), norm_num_groups=32)
    path = tmp_path / f"vqgan{suffix}"
    if suffix == ".safetensors":
        save_file(original.state_dict(), str(path))
    else:
        torch.save(original.state_dict(), path)
    model = load_vqgan(path)  # no yaml: inferred from shapes
    assert model.config == original.config and _same_weights(model, original)


def test_config_inferred_from_shapes_equals_the_yaml_config(tmp_path: Path) -> None:
    for overrides in (dict(ch=32, norm_num_groups=32),
                      dict(ch=32, ch_mult=(1, 2, 2), attn_resolutions=(64,), norm_num_groups=32),
                      dict(ch=32, quantizer="gumbel", norm_num_groups=32),
                      dict(ch=32, attn_resolutions=(), norm_num_groups=32)):
        ckpt, config_file, original = save_tiny_vqgan(tmp_path, **overrides)
        from generator.decoder.loader import read_yaml, vqgan_state_dict
        from generator.weights.checkpoints import read_checkpoint

        state = vqgan_state_dict(read_checkpoint(ckpt), source=ckpt.name)
        from_yaml = vqgan_config_from_mapping(read_yaml(config_file), source=config_file.name)
        assert infer_vqgan_config(state, source=ckpt.name) == from_yaml == original.config


def test_a_checkpoint_for_another_codebook_size_names_the_cause(tmp_path: Path) -> None:
    ckpt, _, original = save_tiny_vqgan(tmp_path, n_embed=16)
    wrong = write_yaml(upstream_vqgan_yaml(original.config.__class__(**{**original.config.to_dict(), "n_embed": 64})),
                       tmp_path / "wrong.yaml")
    with pytest.raises(CheckpointError) as caught:
        load_vqgan(ckpt, wrong)
    message = str(caught.value)
    assert "this checkpoint was trained with n_embed=16; its yaml says 64" in message
    assert "quantize.embedding.weight is [16, 4] in the checkpoint but [64, 4] in the model" in message
    assert message.startswith("tiny_vqgan.ckpt does not fit the VQGAN")


def test_a_checkpoint_for_another_depth_names_every_differing_field(tmp_path: Path) -> None:
    ckpt, _, original = save_tiny_vqgan(tmp_path)
    other = original.config.__class__(**{**original.config.to_dict(), "ch_mult": (1, 2, 2), "n_embed": 32})
    expected = r"trained with n_embed=16, ch_mult=\[1, 2\]; its yaml says n_embed=32, ch_mult=\[1, 2, 2\]"
    with pytest.raises(CheckpointError, match=expected):
        load_vqgan(ckpt, write_yaml(upstream_vqgan_yaml(other), tmp_path / "other.yaml"))


def test_a_checkpoint_that_is_not_a_vqgan(tmp_path: Path) -> None:
    path = tmp_path / "esrgan.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(64, 3, 3, 3)}}, path)
    with pytest.raises(CheckpointError, match="not a VQGAN checkpoint"):
        load_vqgan(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["model"].update(target="ldm.models.autoencoder.AutoencoderKL"),
         "describes a AutoencoderKL, not a VQGAN"),
        (lambda d: d["model"]["params"].pop("ddconfig"), "has no VQGAN parameters"),
        (lambda d: d["model"]["params"].update(remap="used.npy"), "remapped codebook"),
        (lambda d: d["model"]["params"]["ddconfig"].update(attn_type="linear"), "attn_type='linear'"),
        (lambda d: d["model"]["params"]["ddconfig"].update(ch=-3), "not a valid VQGAN config"),
    ],
)
def test_malformed_yaml_configs(tmp_path: Path, mutate, message: str) -> None:
    ckpt, _, original = save_tiny_vqgan(tmp_path)
    data = upstream_vqgan_yaml(original.config)
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        load_vqgan(ckpt, write_yaml(data, tmp_path / "bad.yaml"))


def test_unreadable_yaml(tmp_path: Path) -> None:
    ckpt, _, _ = save_tiny_vqgan(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not a readable YAML file"):
        load_vqgan(ckpt, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_vqgan(ckpt, tmp_path / "missing.yaml")


def test_a_registry_transformer_serves_as_a_vqgan_by_its_first_stage(tmp_path: Path, monkeypatch) -> None:
    """``--vqgan sflckr``-style: a transformer registry entry (here a tiny one under an alias
    another tool uses) gives its first stage, described by its companion project yaml."""
    from generator.decoder.loader import load_vqgan_by_name
    from generator.weights import store
    from generator.weights.registry import WeightFile
    from tests.prior_factories import save_tiny_prior

    prior = save_tiny_prior(tmp_path / "src", "segmentation")
    weights = tmp_path / "checkpoints"
    weights.mkdir()
    (weights / "tiny.ckpt").write_bytes(prior.checkpoint.read_bytes())
    (weights / "tiny.yaml").write_bytes(prior.config.read_bytes())
    monkeypatch.setitem(store.REGISTRY, "test_prior", WeightFile(
        "test_prior", "test_prior.ckpt", ("https://example.invalid/x",), "transformer",
        companions=("test_prior_config",), aliases=("tiny.ckpt",)))
    monkeypatch.setitem(store.REGISTRY, "test_prior_config", WeightFile(
        "test_prior_config", "test_prior.yaml", ("https://example.invalid/y",), "config", aliases=("tiny.yaml",)))
    vqgan = load_vqgan_by_name("tiny", weights_dir=weights, offline=True)
    from generator.weights.checkpoints import read_checkpoint

    state = read_checkpoint(prior.checkpoint)["state_dict"]
    prefix = "first_stage_model."
    first_stage = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    for key, tensor in vqgan.state_dict().items():
        assert torch.equal(tensor, first_stage[key].float()), key
