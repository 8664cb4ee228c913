"""The config tree, presets and their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.config import GenerationConfig
from generator.config_schema import field_paths, merge
from generator.errors import ConfigError
from generator.presets import list_presets, load_preset


def test_round_trip_through_plain_json() -> None:
    config = GenerationConfig.from_dict({
        "prompts": "a | b:-0.5", "size": [320, 240], "seed": 3,
        "models": {"clip_models": [{"model": "ViT-B-32", "pretrained": "openai", "weight": 2}]},
        "cutouts": {"cutn": 8, "augments": ["flip"]},
    })
    assert config.size == (320, 240) and config.cutouts.augments == ("flip",)
    assert config.models.clip_models[0].weight == 2.0
    plain = json.loads(json.dumps(config.to_dict()))
    assert GenerationConfig.from_dict(plain) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cutn": 8}, r"unknown config key cutn; did you mean cutouts\.cutn\?"),
        ({"cutouts": {"cutm": 8}}, r"unknown config key cutouts\.cutm; did you mean cutouts\.cutn\?"),
        ({"steps": 0}, "steps must be between 1 and 100000"),
        ({"steps": "many"}, "config key steps must be a whole number"),
        ({"steps": 2.5}, "config key steps must be a whole number"),
        ({"size": [512]}, "config key size must have 2 items"),
        ({"size": [8, 512]}, "size 8x512 is out of range"),
        ({"cutouts": {"cutn": 0}}, "cutn must be between 1 and 1024"),
        ({"cutouts": {"noise_fac": 2}}, "noise_fac must be between 0 and 1"),
        ({"optim": {"optimiser": "lion"}}, "optimiser must be one of adam"),
        ({"optim": {"lr": -1}}, r"lr must be in \(0, 10\]"),
        ({"init": {"init": "image"}}, "init=image needs an init_image"),
        ({"output": {"video": "yes"}}, "must be true or false"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"models": {"clip_models": []}}, "at least one CLIP model"),
        ({"models": {"clip_models": [{"model": "ViT-B-32", "weight": 0}]}}, "must be a positive number"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_values_get_one_sentence_naming_the_key(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GenerationConfig.from_dict(data)  # type: ignore[arg-type]


def test_field_paths_are_unique_leaf_names() -> None:
    paths = field_paths(GenerationConfig)
    assert paths["cutn"] == "cutouts.cutn" and paths["init_image"] == "init.init_image"
    assert paths["clip_models"] == "models.clip_models" and paths["steps"] == "steps"


def test_merge_is_deep_and_does_not_mutate() -> None:
    base = {"cutouts": {"cutn": 8, "cut_pow": 2.0}, "steps": 5}
    merged = merge(base, {"cutouts": {"cutn": 16}})
    assert merged == {"cutouts": {"cutn": 16, "cut_pow": 2.0}, "steps": 5}
    assert base["cutouts"]["cutn"] == 8


def test_required_presets_exist_and_load() -> None:
    names = list_presets()
    assert names[0] == "default"
    assert {"default", "fast", "quality", "hd", "low-memory"} <= set(names)
    for name in names:
        assert load_preset(name).description
        load_preset(name).config()
    assert load_preset("fast").config().steps < load_preset("quality").config().steps
    assert len(load_preset("quality").config().models.clip_models) == 2


def test_unknown_preset_suggests_a_name() -> None:
    with pytest.raises(ConfigError, match="no preset called 'fats'; did you mean fast"):
        load_preset("fats")


def test_preset_files_are_validated(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"config": {"cutouts": {"cutn": -3}}}))
    with pytest.raises(ConfigError, match="preset bad: cutn must be between"):
        load_preset("bad", directory=tmp_path)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_preset(str(tmp_path / "broken.json"))
    (tmp_path / "extra.json").write_text(json.dumps({"config": {}, "author": "me"}))
    with pytest.raises(ConfigError, match="only \"description\", \"kind\" and \"config\""):
        load_preset("extra", directory=tmp_path)
