"""Transformer priors: loading official-format checkpoints, sampling, the sliding window, conditioning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from generator.config import SampleConfig
from generator.errors import CheckpointError, ConfigError, InputError
from generator.events import Done, Preview, Progress
from generator.sample.conditioning import coordinate_tokens, start_tokens
from generator.sample.loader import load_prior
from generator.sample.pipeline import Sampler
from generator.sample.sampling import (
    SamplingSettings,
    filter_logits,
    sample_in_window,
    sample_sliding,
    sliding_order,
    window_origin,
)
from tests.factories import save_lightning_checkpoint, upstream_vqgan_yaml, write_yaml
from tests.prior_factories import N_CLASSES, SEG_LABELS, save_tiny_prior


@pytest.fixture(scope="module")
def priors(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("priors")
    return {kind: save_tiny_prior(directory, kind) for kind in ("sos", "class", "coord", "segmentation", "depth")}


def _label_map(path: Path, size: tuple[int, int]) -> Path:
    labels = (np.add.outer(np.arange(size[1]) // 8, np.arange(size[0]) // 8) % SEG_LABELS).astype(np.uint8)
    Image.fromarray(labels, mode="L").save(path)
    return path


# --- loading -----------------------------------------------------------------------------------


def test_official_layout_loads_strictly_with_mask_buffers(priors: dict) -> None:
    tiny = priors["sos"]
    prior = load_prior(tiny.checkpoint)  # the yaml beside it is found
    assert any(k.endswith("attn.mask") for k in prior.gpt.state_dict())
    for key, value in tiny.gpt.state_dict().items():
        assert torch.equal(prior.gpt.state_dict()[key], value), key
    assert prior.spec.conditioning == "sos" and prior.spec.window == (16, 16)
    assert prior.vqgan.config.n_embed == prior.spec.gpt.vocab_size == 16


@pytest.mark.parametrize("kind", ["class", "coord", "segmentation", "depth"])
def test_every_conditioning_kind_loads(priors: dict, kind: str) -> None:
    prior = load_prior(priors[kind].checkpoint)
    assert prior.spec.conditioning == kind
    assert (prior.cond_vqgan is not None) == (kind in ("segmentation", "depth"))
    if kind == "class":
        assert prior.spec.n_classes == N_CLASSES


def test_a_transformer_paired_with_the_wrong_vqgan(tmp_path: Path) -> None:
    tiny = save_tiny_prior(tmp_path, "sos", first_stage_codes=32, vocab_size=16)
    with pytest.raises(CheckpointError, match="predicts 16 codes but its VQGAN has 32, so they do not belong together"):
        load_prior(tiny.checkpoint)


def test_a_yaml_for_another_transformer_names_the_difference(tmp_path: Path, priors: dict) -> None:
    text = priors["sos"].config.read_text().replace("n_layer: 1", "n_layer: 3")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text)
    with pytest.raises(CheckpointError, match="trained with n_layer=1; its yaml says n_layer=3"):
        load_prior(priors["sos"].checkpoint, wrong)


def test_a_vqgan_checkpoint_is_not_a_prior(tmp_path: Path) -> None:
    from tests.factories import save_tiny_vqgan

    ckpt, config, _ = save_tiny_vqgan(tmp_path)
    with pytest.raises(CheckpointError, match="not a Taming transformer checkpoint"):
        load_prior(ckpt, config)


def test_missing_yaml_and_unsupported_conditioning(tmp_path: Path, priors: dict) -> None:
    lonely = tmp_path / "lonely.ckpt"
    lonely.write_bytes(priors["sos"].checkpoint.read_bytes())
    with pytest.raises(ConfigError, match="needs its project yaml"):
        load_prior(lonely)
    project = write_yaml({"model": {"params": {
        "transformer_config": {"params": priors["sos"].gpt.config.to_dict()},
        "first_stage_config": upstream_vqgan_yaml(load_prior(priors["sos"].checkpoint).vqgan.config)["model"],
        "cond_stage_key": "caption", "cond_stage_config": {"target": "some.TextEncoder"}}}}, tmp_path / "text.yaml")
    with pytest.raises(ConfigError, match="conditions on 'caption', which this tool does not sample"):
        load_prior(lonely, project)


# --- sampling ----------------------------------------------------------------------------------


def test_cached_and_recomputed_sampling_give_identical_tokens(priors: dict) -> None:
    prior = load_prior(priors["sos"].checkpoint)
    results = []
    for use_cache in (True, False):
        tokens = torch.zeros(3, 256, dtype=torch.long)
        rows = list(sample_in_window(prior.gpt, start_tokens(prior, 3, None), tokens, 16, start=0,
                                     settings=SamplingSettings(1.0, 8, 0.95),
                                     generator=torch.Generator().manual_seed(5), use_cache=use_cache))
        assert rows == list(range(16))
        results.append(tokens)
    assert torch.equal(results[0], results[1])
    assert len(results[0].unique()) > 3  # really sampled, not constant


def test_filter_logits_top_k_top_p_and_temperature() -> None:
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(logits, SamplingSettings(top_k=2))[0, 2:]).all()
    assert torch.isfinite(filter_logits(logits, SamplingSettings(top_k=2))[0, :2]).all()
    probs = logits.softmax(-1)[0]  # 0.64, 0.24, 0.09, ...
    kept = torch.isfinite(filter_logits(logits, SamplingSettings(top_p=0.8)))[0]
    assert kept.tolist() == [True, True, False, False, False] and probs[:1].sum() < 0.8 <= probs[:2].sum()
    assert torch.isfinite(filter_logits(logits, SamplingSettings(top_p=0.1))).sum() == 1  # always one
    torch.testing.assert_close(filter_logits(logits, SamplingSettings(temperature=2.0)), logits / 2)


def _taming_local(position: int, length: int) -> int:
    """The three-branch formula of taming's sample_conditional.py (window 16)."""
    if position <= 8:
        return position
    return 16 - (length - position) if length - position < 8 else 8


@pytest.mark.parametrize(("height", "width"), [(16, 16), (24, 40), (17, 33), (32, 16)])
def test_sliding_window_visits_every_cell_once_inside_the_grid(height: int, width: int) -> None:
    seen = []
    for i, j, i0, j0 in sliding_order(height, width, (16, 16)):
        assert 0 <= i0 <= height - 16 and 0 <= j0 <= width - 16
        assert i0 <= i < i0 + 16 and j0 <= j < j0 + 16
        assert i0 == min(max(i - 8, 0), height - 16) and j0 == min(max(j - 8, 0), width - 16)
        assert i - i0 == _taming_local(i, height) and j - j0 == _taming_local(j, width)
        seen.append((i, j))
    assert seen == [(i, j) for i in range(height) for j in range(width)]
    assert list(sliding_order(height, width, (16, 16), start=5))[0][:2] == divmod(5, width)
    assert window_origin(3, 40, 16) == 0 and window_origin(20, 40, 16) == 12 and window_origin(39, 40, 16) == 24


class _Recorder(torch.nn.Module):
    """Wraps a GPT and records every sequence it is given."""

    def __init__(self, gpt: torch.nn.Module):
        super().__init__()
        self.gpt, self.config, self.pos_emb, self.inputs = gpt, gpt.config, gpt.pos_emb, []

    def forward(self, idx: torch.Tensor, **kwargs) -> torch.Tensor:
        self.inputs.append(idx.clone())
        return self.gpt(idx, **kwargs)


def test_sliding_window_feeds_the_same_window_of_the_condition(priors: dict) -> None:
    prior = load_prior(priors["coord"].checkpoint)
    recorder = _Recorder(prior.gpt)
    cond = coordinate_tokens(prior, (24, 40), 1)
    tokens = torch.zeros(1, 24, 40, dtype=torch.long)
    list(sample_sliding(recorder, cond, tokens, (16, 16), start=0, settings=SamplingSettings(),
                        generator=torch.Generator().manual_seed(0)))
    assert len(recorder.inputs) == 24 * 40
    for (i, j, i0, j0), sequence in zip(sliding_order(24, 40, (16, 16)), recorder.inputs, strict=True):
        local = (i - i0) * 16 + (j - j0)
        assert torch.equal(sequence[0, :256], cond[0, i0 : i0 + 16, j0 : j0 + 16].reshape(-1))
        assert torch.equal(sequence[0, 256:], tokens[0, i0 : i0 + 16, j0 : j0 + 16].reshape(-1)[:local])


def test_start_and_class_tokens_are_prepended_to_every_window(priors: dict) -> None:
    prior = load_prior(priors["class"].checkpoint)
    recorder = _Recorder(prior.gpt)
    tokens = torch.zeros(2, 16, 20, dtype=torch.long)
    list(sample_sliding(recorder, start_tokens(prior, 2, 7), tokens, (16, 16), start=100,
                        settings=SamplingSettings(), generator=torch.Generator().manual_seed(0)))
    assert len(recorder.inputs) == 16 * 20 - 100
    assert all(sequence[:, 0].tolist() == [7, 7] for sequence in recorder.inputs)
    assert torch.equal(tokens[:, :5].flatten(1)[:, :100], torch.zeros(2, 100, dtype=torch.long))  # kept


def test_coordinate_tokens_follow_coordstage(priors: dict) -> None:
    prior = load_prior(priors["coord"].checkpoint)
    grid = (16, 24)
    height, width = 32, 48
    coord = torch.arange(height * width, dtype=torch.float32).view(1, 1, height, width) / (height * width)
    expected = (F.interpolate(coord, scale_factor=1 / 2, mode="area").clamp(0, 1) * 15).round().long()[:, 0]
    assert torch.equal(coordinate_tokens(prior, grid, 1), expected)


# --- the sampling pipeline -------------------------------------------------------------------------


def _run(sampler: Sampler, **settings) -> list:
    return list(sampler.run(SampleConfig.from_dict({"n": 2, "batch_size": 2, "seed": 0, **settings})))


def test_window_sized_grid_uses_the_cache_and_reports_rows(priors: dict) -> None:
    sampler = Sampler(load_prior(priors["sos"].checkpoint), model=str(priors["sos"].checkpoint))
    events = _run(sampler, output={"save_every": 4})
    assert [e.step for e in events if isinstance(e, Progress)] == list(range(1, 17))
    assert [e.step for e in events if isinstance(e, Preview)] == [4, 8, 12, 16]
    done = events[-1]
    assert isinstance(done, Done) and [im.size for im in done.images] == [(32, 32)] * 2
    assert done.config["size"] == [32, 32] and done.config["seed"] == 0
    again = _run(sampler, use_cache=False)[-1]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(done.images, again.images, strict=True))


@pytest.mark.parametrize("kind", ["sos", "class", "coord", "segmentation", "depth"])
def test_large_grids_use_the_sliding_window_for_every_conditioning(priors: dict, kind: str, tmp_path: Path) -> None:
    sampler = Sampler(load_prior(priors[kind].checkpoint), model=kind)
    extra = {"class_label": 3} if kind == "class" else {}
    if kind in ("segmentation", "depth"):
        extra = {"condition": str(_label_map(tmp_path / "map.png", (80, 48)))}
    events = _run(sampler, size=[80, 48], **extra)
    assert sum(isinstance(e, Progress) for e in events) == 24  # one batch of 24 rows
    assert [im.size for im in events[-1].images] == [(80, 48)] * 2


def test_image_completion_keeps_the_first_tokens(priors: dict, tmp_path: Path) -> None:
    prior = load_prior(priors["sos"].checkpoint)
    photo = Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))
    photo.save(tmp_path / "photo.png")
    done = _run(Sampler(prior), complete=str(tmp_path / "photo.png"), keep=0.5, n=1, batch_size=1)[-1]

    def codes(image: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.asarray(image) / 127.5 - 1).permute(2, 0, 1)[None].float()
        return prior.vqgan.encode_to_indices(pixels)

    with torch.no_grad():
        original = codes(photo)
        sampled = codes(done.images[0])
    kept_rows = original[0, :8]
    assert (sampled[0, :8] == kept_rows).float().mean() > 0.6  # decoded and re-encoded: mostly the same codes


@pytest.mark.parametrize(
    ("kind", "settings", "message"),
    [
        ("sos", {"size": [16, 16]},
         "gives a 8x8 token grid, smaller than this model's 16x16 training window; use at least 32x32"),
        ("sos", {"size": [200, 20]}, "smaller than this model's 16x16 training window"),
        ("class", {}, "this model is class-conditional; give --class N"),
        ("class", {"class_label": 10}, "class 10 is out of range; this model has 10 classes"),
        ("segmentation", {}, "conditioned on segmentation maps; give --condition"),
        ("sos", {"condition": "MAP"}, "not on a map; leave --condition out"),
    ],
)
def test_bad_sampling_requests(priors: dict, tmp_path: Path, kind: str, settings: dict, message: str) -> None:
    if settings.get("condition") == "MAP":
        settings["condition"] = str(_label_map(tmp_path / "map.png", (32, 32)))
    with pytest.raises(InputError, match=message):
        _run(Sampler(load_prior(priors[kind].checkpoint)), **settings)


def test_a_condition_map_of_the_wrong_shape(priors: dict, tmp_path: Path) -> None:
    wide = _label_map(tmp_path / "wide.png", (96, 32))
    with pytest.raises(InputError, match="the condition map is 96x32 but the size asked for is 32x32"):
        _run(Sampler(load_prior(priors["segmentation"].checkpoint)), condition=str(wide), size=[32, 32])
    labels = np.full((32, 32), SEG_LABELS + 2, dtype=np.uint8)
    Image.fromarray(labels, mode="L").save(tmp_path / "bad.png")
    with pytest.raises(InputError, match=f"holds class {SEG_LABELS + 2}, but this model knows {SEG_LABELS} classes"):
        _run(Sampler(load_prior(priors["segmentation"].checkpoint)), condition=str(tmp_path / "bad.png"))


def test_a_map_sets_the_size_when_none_is_given(priors: dict, tmp_path: Path) -> None:
    sampler = Sampler(load_prior(priors["depth"].checkpoint))
    done = _run(sampler, condition=str(_label_map(tmp_path / "d.png", (64, 34))), n=1)[-1]
    assert done.images[0].size == (64, 34)


def test_checkpoint_with_a_foreign_tensor_is_refused(tmp_path: Path, priors: dict) -> None:
    prior = load_prior(priors["sos"].checkpoint)
    state = {f"transformer.{k}": v for k, v in prior.gpt.state_dict().items()}
    state.update({f"first_stage_model.{k}": v for k, v in prior.vqgan.state_dict().items()})
    state["ema.decay"] = torch.tensor(0.99)
    path = save_lightning_checkpoint(state, tmp_path / "odd.ckpt", loss_tensors=False)
    with pytest.raises(CheckpointError, match="it holds ema.decay"):
        load_prior(path, priors["sos"].config)
