"""Loading CLIP through open_clip from configs, state dicts, TorchScript archives, tags and the registry."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU

from generator.errors import CheckpointError, ConfigError, WeightsError
from generator.text_to_image import loader as clip_loader
from generator.text_to_image.clip import ClipModel
from generator.text_to_image.clip_lean import LeanQuickGELU, LeanSelfAttention
from generator.text_to_image.loader import load_clip
from tests.clip_factories import TINY_CLIP_CONFIG, tiny_clip, tiny_clip_module, write_tiny_clip
from tests.factories import tiny_vqgan


def _assert_weights_equal(clip: ClipModel, reference: dict[str, torch.Tensor]) -> None:
    loaded = clip.model.state_dict()
    assert loaded.keys() == reference.keys()
    for key, value in reference.items():
        assert loaded[key].dtype == torch.float32 or not value.is_floating_point(), key
        assert torch.equal(loaded[key], value.float() if value.is_floating_point() else value), key


def _config(**vision: int) -> dict:
    cfg = copy.deepcopy(TINY_CLIP_CONFIG)
    cfg["vision_cfg"].update(vision)
    return cfg


def _jit_archive(path: Path, module: torch.nn.Module) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_config_json_and_state_dict_load_the_saved_weights(tmp_path: Path, fmt: str) -> None:
    config_path, weights_path = write_tiny_clip(tmp_path, seed=3, fmt=fmt)
    clip = load_clip(config_path, weights_path)
    _assert_weights_equal(clip, tiny_clip_module(seed=3).state_dict())
    assert not clip.model.training and not any(p.requires_grad for p in clip.model.parameters())
    assert clip.name.startswith("tiny-clip-") and clip.name.endswith(f"/tiny-clip.{fmt}")
    assert clip.embed_dim == 32 and clip.device == torch.device("cpu")


def test_wrapped_state_dict_with_module_prefix_in_fp16(tmp_path: Path) -> None:
    config_path, _ = write_tiny_clip(tmp_path)
    reference = tiny_clip_module(seed=5).state_dict()
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v.half() for k, v in reference.items()}}
    torch.save(wrapped, tmp_path / "epoch_3.pt")
    clip = load_clip(config_path, tmp_path / "epoch_3.pt")
    _assert_weights_equal(clip, {k: v.half().float() for k, v in reference.items()})


def test_torchscript_archive_is_flattened_without_running_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path, _ = write_tiny_clip(tmp_path)
    original = tiny_clip_module(seed=7)
    archive = _jit_archive(tmp_path / "ViT-tiny.pt", original)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the archive must not be loaded with torch.jit.load")

    monkeypatch.setattr(torch.jit, "load", refuse)
    clip = load_clip(config_path, archive)
    _assert_weights_equal(clip, original.state_dict())
    assert not clip.quick_gelu  # the archive's own activation modules are GELU


def test_torchscript_archive_with_quickgelu_and_openai_extras(tmp_path: Path) -> None:
    config_path, _ = write_tiny_clip(tmp_path)
    original = tiny_clip_module(seed=8, quick_gelu=True)
    # OpenAI's archives carry these non-parameter tensors beside the weights.
    extras = {"input_resolution": 32, "context_length": 77, "vocab_size": 49408}
    for name, value in extras.items():
        if hasattr(original, name):
            delattr(original, name)  # plain ints in open_clip, tensors in OpenAI's archives
        original.register_buffer(name, torch.tensor(value))
    archive = _jit_archive(tmp_path / "openai-style.pt", original)
    clip = load_clip(config_path, archive)
    assert clip.quick_gelu
    reference = {k: v for k, v in original.state_dict().items() if k not in extras}
    _assert_weights_equal(clip, reference)


def test_quick_gelu_flag_switches_the_activation(tmp_path: Path) -> None:
    config_path, weights_path = write_tiny_clip(tmp_path)
    quick = load_clip(config_path, weights_path, quick_gelu=True)
    plain = load_clip(config_path, weights_path)
    assert quick.quick_gelu and any(isinstance(m, LeanQuickGELU) for m in quick.model.modules())
    assert not plain.quick_gelu and any(isinstance(m, torch.nn.GELU) for m in plain.model.modules())
    image = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(quick.encode_image(image), plain.encode_image(image))


def test_the_lean_quick_gelu_computes_what_quick_gelu_does_and_keeps_only_its_input() -> None:
    x = torch.randn(4, 7, 33, dtype=torch.float64, requires_grad=True)
    lean, reference = LeanQuickGELU()(x), QuickGELU()(x)
    assert torch.allclose(lean, reference, atol=1e-12)
    grad = torch.randn_like(x)
    (lean_grad,) = torch.autograd.grad(lean, x, grad)
    (reference_grad,) = torch.autograd.grad(reference, x, grad)
    assert torch.allclose(lean_grad, reference_grad, atol=1e-12)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        LeanQuickGELU()(x)
    assert len(saved) == 1 and saved[0] is x  # QuickGELU itself keeps the sigmoid as well
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        QuickGELU()(x)
    assert len(saved) >= 2


def test_the_lean_self_attention_computes_what_multihead_attention_does_with_the_same_parameters() -> None:
    torch.manual_seed(0)
    reference = torch.nn.MultiheadAttention(48, 4, batch_first=True).double()
    lean = LeanSelfAttention.from_module(copy.deepcopy(reference))
    assert lean.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(3, 7, 48, dtype=torch.float64, requires_grad=True)
    causal = torch.full((7, 7), float("-inf"), dtype=torch.float64).triu(1)
    for mask in (None, causal):
        out, weights = lean(x, x, x, need_weights=False, attn_mask=mask)
        expected = reference(x, x, x, need_weights=False, attn_mask=mask)[0]
        assert weights is None and torch.allclose(out, expected, atol=1e-10)
        grad = torch.randn_like(out)
        assert torch.allclose(torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(expected, x, grad)[0],
                              atol=1e-10)
    other = torch.randn(3, 5, 48, dtype=torch.float64)  # cross-attention takes the module's own path
    assert torch.allclose(lean(x, other, other, need_weights=False)[0],
                          reference(x, other, other, need_weights=False)[0], atol=1e-10)


def test_loaded_clip_uses_the_lean_layers_and_keeps_its_state_dict_names(tmp_path: Path) -> None:
    config_path, weights_path = write_tiny_clip(tmp_path)
    clip = load_clip(config_path, weights_path)
    attentions = [m for m in clip.model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert attentions and all(isinstance(m, LeanSelfAttention) for m in attentions)
    reference = load_clip(config_path, weights_path)
    assert clip.model.state_dict().keys() == reference.model.state_dict().keys()
    assert any(key.endswith("attn.in_proj_weight") for key in clip.model.state_dict())


def test_quick_gelu_false_overrides_a_quickgelu_config(tmp_path: Path) -> None:
    config_path, weights_path = write_tiny_clip(tmp_path, config={**TINY_CLIP_CONFIG, "quick_gelu": True})
    assert load_clip(config_path, weights_path).quick_gelu
    assert not load_clip(config_path, weights_path, quick_gelu=False).quick_gelu


def test_encoders_shapes_unit_norm_and_gradient(tmp_path: Path) -> None:
    clip = tiny_clip(tmp_path)
    text = clip.encode_text(["a red fox", "a city at night", "x"])
    assert text.shape == (3, 32) and text.dtype == torch.float32 and not text.requires_grad
    assert torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5)
    images = torch.rand(4, 3, 32, 32, requires_grad=True)
    embeds = clip.encode_image(images)
    assert embeds.shape == (4, 32) and embeds.dtype == torch.float32
    assert torch.allclose(embeds.norm(dim=-1), torch.ones(4), atol=1e-5)
    (embeds @ text[0]).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.model.parameters())


def test_encode_image_normalises_with_the_model_mean_and_std(tmp_path: Path) -> None:
    clip = tiny_clip(tmp_path)
    images = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(clip.mean).view(1, 3, 1, 1), torch.tensor(clip.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(clip.model.encode_image((images - mean) / std), dim=-1)
    assert torch.allclose(clip.encode_image(images), expected, atol=1e-6)


def test_wrong_input_size_is_refused(tmp_path: Path) -> None:
    clip = tiny_clip(tmp_path)
    with pytest.raises(ValueError, match="32x32"):
        clip.encode_image(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError):
        clip.encode_image(torch.rand(3, 32, 32))


def test_input_size_mean_and_std_come_from_the_model(tmp_path: Path) -> None:
    clip = tiny_clip(tmp_path, config=_config(image_size=48))
    assert clip.input_size == 48 and clip.model.visual.image_size == (48, 48)
    assert clip.encode_image(torch.rand(1, 3, 48, 48)).shape == (1, 32)
    assert (clip.mean, clip.std) == (tuple(open_clip.OPENAI_DATASET_MEAN), tuple(open_clip.OPENAI_DATASET_STD))
    # An open_clip_config.json (model_cfg + preprocess_cfg) sets its own normalisation.
    _, weights_path = write_tiny_clip(tmp_path / "hub", config=_config(image_size=48))
    wrapped = tmp_path / "open_clip_config.json"
    wrapped.write_text(json.dumps({"model_cfg": _config(image_size=48),
                                   "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}))
    custom = load_clip(wrapped, weights_path)
    assert custom.mean == (0.5, 0.5, 0.5) and custom.std == (0.25, 0.25, 0.25) and custom.input_size == 48
    assert custom.model.visual.preprocess_cfg["mean"] == [0.5, 0.5, 0.5]


def test_two_configs_with_the_same_file_name_do_not_collide(tmp_path: Path) -> None:
    small = tiny_clip(tmp_path / "a", name="clip")
    large = tiny_clip(tmp_path / "b", name="clip", config=_config(image_size=48))
    again = tiny_clip(tmp_path / "c", name="clip")
    assert (small.input_size, large.input_size, again.input_size) == (32, 48, 32)
    assert small.name.split("/")[0] != large.name.split("/")[0]
    assert small.name == again.name  # same contents, same registered name


def test_same_file_gives_identical_embeddings_and_seeds_differ(tmp_path: Path) -> None:
    config_path, weights_path = write_tiny_clip(tmp_path, seed=11)
    first, second = load_clip(config_path, weights_path), load_clip(config_path, weights_path)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first.encode_image(images), second.encode_image(images))
    assert torch.equal(first.encode_text(["a fox"]), second.encode_text(["a fox"]))
    other = tiny_clip(tmp_path / "other", seed=12)
    assert not torch.allclose(first.encode_text(["a fox"]), other.encode_text(["a fox"]))


def test_random_weights_and_to(tmp_path: Path) -> None:
    config_path, _ = write_tiny_clip(tmp_path)
    clip = load_clip(config_path, None)
    assert clip.name.endswith("/random") and clip.to("cpu") is clip
    assert clip.encode_text(["hello"]).shape == (1, 32)


def test_registry_name_offline_and_missing_names_the_download_command() -> None:
    for model, pretrained in (("ViT-B-32", "clip_vit_b_32_openai"), ("ViT-B-32", "openai"),
                              ("ViT-B-32-quickgelu", "openai"), ("ViT-B-32", "laion2b_e16")):
        with pytest.raises(WeightsError, match="python -m generator download clip_vit_b_32") as info:
            load_clip(model, pretrained)
        assert "offline" in str(info.value)


def test_registry_name_loads_the_file_in_the_weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # without a known hash (as here), a file under the entry's name is used as it is
    import dataclasses

    from generator.weights import store

    entry = store.REGISTRY["clip_vit_b_32_laion2b_e16"]
    monkeypatch.setitem(store.REGISTRY, entry.name, dataclasses.replace(entry, sha256=None, sha256_source=""))
    monkeypatch.setenv("GENERATOR_WEIGHTS_DIR", str(tmp_path / "weights"))
    config_path, weights_path = write_tiny_clip(tmp_path, seed=4)
    (tmp_path / "weights").mkdir()
    weights_path.rename(tmp_path / "weights" / "vit_b_32-laion2b_e16-af8dbd0c.pth")
    clip = load_clip(config_path, "clip_vit_b_32_laion2b_e16")
    _assert_weights_equal(clip, tiny_clip_module(seed=4).state_dict())
    assert clip.name.endswith("/clip_vit_b_32_laion2b_e16") and not clip.quick_gelu
    with pytest.raises(WeightsError, match="vqgan weights, not clip"):
        load_clip(config_path, "vqgan_imagenet_f16_16384")


def test_registry_weights_for_another_architecture_are_refused() -> None:
    with pytest.raises(ConfigError, match="ViT-B-32"):
        load_clip("RN50", "clip_vit_b_32_openai")


def test_unknown_architecture_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match="did you mean.*ViT-B-32"):
        load_clip("ViT-B-33", None)


def test_unknown_tag_lists_the_architecture_tags() -> None:
    with pytest.raises(ConfigError, match="laion2b_s34b_b79k"):
        load_clip("ViT-B-32", "laion5b_nonsense")


def test_missing_file_and_bad_config_file(tmp_path: Path) -> None:
    config_path, _ = write_tiny_clip(tmp_path)
    with pytest.raises(WeightsError, match="does not exist"):
        load_clip(config_path, tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        load_clip(tmp_path / "nope.json", None)
    (tmp_path / "bad.json").write_text(json.dumps({"embed_dim": 3}))
    with pytest.raises(ConfigError, match="not an open_clip model config"):
        load_clip(tmp_path / "bad.json", None)


def test_a_vqgan_state_dict_is_not_clip_weights(tmp_path: Path) -> None:
    config_path, _ = write_tiny_clip(tmp_path)
    torch.save(tiny_vqgan().state_dict(), tmp_path / "vqgan.pth")
    with pytest.raises(CheckpointError, match="not a CLIP checkpoint"):
        load_clip(config_path, tmp_path / "vqgan.pth")


def test_weights_of_another_architecture_report_shapes(tmp_path: Path) -> None:
    config_path, _ = write_tiny_clip(tmp_path / "narrow")
    _, wide_weights = write_tiny_clip(tmp_path / "wide", config=_config(width=48))
    with pytest.raises(CheckpointError, match=r"different CLIP architecture.*\[48.*in the checkpoint but \[32"):
        load_clip(config_path, wide_weights)


class _TagFixture:
    """A fake open_clip pretrained tag for the tiny architecture."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        config_path, self.weights_path = write_tiny_clip(tmp_path / "src", seed=21)
        # the tiny config plays a built-in open_clip architecture that has a pretrained tag
        self.arch = "tiny-test-arch"
        model_cfg = json.loads(config_path.read_text())
        monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, self.arch, model_cfg.get("model_cfg", model_cfg))
        cfg = {"url": "https://example.invalid/tiny-clip-abc.pt", "hf_hub": "", "quick_gelu": True,
               "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2)}
        monkeypatch.setitem(open_clip.pretrained._PRETRAINED, self.arch, {"tinytag": cfg})
        self.cache_file = Path(tmp_path / "weights" / "open_clip" / "tiny-clip-abc.pt")
        monkeypatch.setenv("GENERATOR_WEIGHTS_DIR", str(tmp_path / "weights"))


def test_open_clip_tag_offline_without_cache_is_a_weights_error(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _TagFixture(tmp_path, monkeypatch)
    with pytest.raises(WeightsError, match=f"{fake.arch}/tinytag.*offline.*local weights file"):
        load_clip(fake.arch, "tinytag")
    with pytest.raises(ConfigError, match="its tags are tinytag"):
        load_clip(fake.arch, "othertag")


def test_open_clip_tag_download_and_offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _TagFixture(tmp_path, monkeypatch)
    calls = []

    def fake_download(cfg: dict, cache_dir: str) -> str:
        calls.append(cache_dir)
        fake.cache_file.parent.mkdir(parents=True, exist_ok=True)
        fake.cache_file.write_bytes(fake.weights_path.read_bytes())
        return str(fake.cache_file)

    monkeypatch.setattr(clip_loader, "download_pretrained", fake_download)
    clip = load_clip(fake.arch, "tinytag", offline=False)
    assert calls == [str(tmp_path / "weights" / "open_clip")]
    assert clip.name == f"{fake.arch}/tinytag" and clip.quick_gelu  # from the tag's cfg
    assert clip.mean == (0.5, 0.4, 0.3) and clip.std == (0.2, 0.2, 0.2)
    _assert_weights_equal(clip, tiny_clip_module(seed=21).state_dict())
    again = load_clip(fake.arch, "tinytag")  # offline (conftest), served from the cache
    assert len(calls) == 1 and torch.equal(again.encode_text(["a"]), clip.encode_text(["a"]))


def test_failed_download_is_a_weights_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _TagFixture(tmp_path, monkeypatch)

    def broken(cfg: dict, cache_dir: str) -> str:
        raise RuntimeError("Name or service not known")

    monkeypatch.setattr(clip_loader, "download_pretrained", broken)
    with pytest.raises(WeightsError, match="downloading .*failed \\(Name or service not known\\)"):
        load_clip(fake.arch, "tinytag", offline=False)


def test_open_clip_tag_offline_from_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _TagFixture(tmp_path, monkeypatch)
    cfg = {**open_clip.pretrained._PRETRAINED[fake.arch]["tinytag"], "url": "", "hf_hub": "org/tiny-clip/"}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, fake.arch, {"tinytag": cfg})
    repo = tmp_path / "weights" / "open_clip" / "models--org--tiny-clip"  # huggingface_hub's cache layout
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "open_clip_pytorch_model.bin").write_bytes(fake.weights_path.read_bytes())
    clip = load_clip(fake.arch, "tinytag")
    _assert_weights_equal(clip, tiny_clip_module(seed=21).state_dict())
