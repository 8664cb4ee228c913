"""Seed variations (``--variation-seed S --variation-strength A``): the random start of the run's
seed mixed with the variation seed's by spherical interpolation; everything else follows the seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.cli.main import main
from generator.config import GenerationConfig
from generator.errors import ConfigError, InputError
from generator.text_to_image.latents import slerp
from generator.text_to_image.tab import variation
from generator.webui.forms import from_form, to_form
from generator.webui.jobs import text_to_image_job
from generator.webui.studio import Studio
from tests.factories import tiny_run_config
from tests.served_app import served_app

ROOT = Path(__file__).resolve().parents[2]


def _varied(files, seed: int | None, strength: float | None, init: str = "random", **overrides) -> GenerationConfig:
    return tiny_run_config(files, init={"init": init, "variation_seed": seed, "variation_strength": strength},
                           **overrides)


def _image(pipeline, config: GenerationConfig) -> np.ndarray:
    return np.asarray(pipeline(config).images[0])


def _start(pipeline, config: GenerationConfig) -> torch.Tensor:
    """The latent a run of ``config`` starts from."""
    loop = pipeline.new_loop(config)
    for _ in pipeline.start_image(loop, config, tuple(config.size)):
        pass
    return loop.latents()[0]


def test_strength_zero_is_the_seeds_image_bit_for_bit(tiny_files, tiny_pipeline) -> None:
    # larger than the tiny CLIP's input, so that the crops (drawn from the seed's generator after the start) matter
    for init in ("random", "pixels", "gradient"):
        base = _image(tiny_pipeline, tiny_run_config(tiny_files, size=[64, 48], init={"init": init}))
        zero = _image(tiny_pipeline, _varied(tiny_files, 9, 0.0, init, size=[64, 48]))
        assert np.array_equal(base, zero), init
        assert not np.array_equal(base, _image(tiny_pipeline, _varied(tiny_files, 9, 0.3, init, size=[64, 48])))


def test_strength_one_starts_exactly_where_the_variation_seed_starts(tiny_files, tiny_pipeline) -> None:
    # Equal: the start latent of (seed 3, variation seed 9, strength 1) and of a plain run with seed 9.
    # Not equal: the images, since the cutouts and their augmentations still follow seed 3.
    one = _varied(tiny_files, 9, 1.0)
    assert torch.equal(_start(tiny_pipeline, one), _start(tiny_pipeline, tiny_run_config(tiny_files, seed=9)))
    assert not torch.equal(_start(tiny_pipeline, one), _start(tiny_pipeline, tiny_run_config(tiny_files)))
    final = _image(tiny_pipeline, one)
    assert not np.array_equal(final, _image(tiny_pipeline, tiny_run_config(tiny_files, seed=9)))
    assert not np.array_equal(final, _image(tiny_pipeline, tiny_run_config(tiny_files)))


def test_a_small_strength_stays_closer_to_the_seeds_image_than_a_large_one(tiny_files, tiny_pipeline) -> None:
    base = _image(tiny_pipeline, tiny_run_config(tiny_files)).astype(float)

    def distance(strength: float) -> float:
        return float(np.mean([np.abs(_image(tiny_pipeline, _varied(tiny_files, v, strength)) - base).mean()
                              for v in (9, 10)]))

    assert 0 < distance(0.1) < distance(0.5)


def test_the_same_seeds_and_strength_give_the_same_pixels(tiny_files, tiny_pipeline) -> None:
    first = _image(tiny_pipeline, _varied(tiny_files, 9, 0.25))
    assert np.array_equal(first, _image(tiny_pipeline, _varied(tiny_files, 9, 0.25)))
    assert not np.array_equal(first, _image(tiny_pipeline, _varied(tiny_files, 10, 0.25)))


def test_an_edit_varies_only_its_random_fill(tiny_files, tiny_pipeline, tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[:, :16] = 255
    Image.fromarray(mask).save(tmp_path / "left.png")
    edit = {"mask": str(tmp_path / "left.png"), "mask_blur": 0, "mask_fill": "random"}
    init = {"init": "image", "init_image": str(tmp_path / "photo.png")}
    base = _image(tiny_pipeline, tiny_run_config(tiny_files, size=None, steps=4, init=init, edit=edit))
    varied = _image(tiny_pipeline, tiny_run_config(tiny_files, size=None, steps=4, edit=edit,
                                                   init={**init, "variation_seed": 9, "variation_strength": 0.5}))
    assert np.array_equal(varied[:, 16:], pixels[:, 16:]) and not np.array_equal(varied[:, :16], base[:, :16])


def test_slerp_turns_the_direction_and_interpolates_the_norm() -> None:
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])
    assert slerp(a, b, 0.0) is a and slerp(a, b, 1.0) is b
    half = slerp(a, b, 0.5)
    assert torch.allclose(half, torch.full((2,), 3 / 2**0.5))  # 45 degrees, norm (2 + 4) / 2
    third = slerp(a, b, 1 / 3)  # 30 degrees along the quarter circle
    assert torch.allclose(torch.atan2(third[1], third[0]), torch.tensor(torch.pi / 6))


def _cli(tiny_files, out: Path, *args: str) -> list[str]:
    return ["city at night", "--steps", "3", "--cutn", "4", "--size", "64", "48", "--precision", "fp32", "--seed", "3",
            *tiny_files.cli_args(), "--out", str(out), "--device", "cpu", *args]


def test_a_variation_is_recorded_and_repeated_by_from(tiny_files, tmp_path: Path, capsys) -> None:
    assert main(_cli(tiny_files, tmp_path / "a", "--variation-seed", "9", "--variation-strength", "0.3")) == 0
    final = Path(capsys.readouterr().out.strip().splitlines()[-1])
    recorded = json.loads((final.parent / "config.json").read_text())
    assert recorded["seed"] == 3 and recorded["init"]["variation_seed"] == 9
    assert recorded["init"]["variation_strength"] == 0.3
    assert main([*_cli(tiny_files, tmp_path / "b")[:1], "--from", str(final), "--out", str(tmp_path / "b"),
                 *tiny_files.cli_args()]) == 0
    again = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(final)))
    assert json.loads((again.parent / "config.json").read_text()) == recorded
    # without a variation seed the recorded config says none
    assert main(_cli(tiny_files, tmp_path / "c")) == 0
    plain = Path(capsys.readouterr().out.strip().splitlines()[-1])
    init = json.loads((plain.parent / "config.json").read_text())["init"]
    assert init["variation_seed"] is None and init["variation_strength"] is None


def test_strength_zero_writes_the_same_final_png_as_the_plain_run(tiny_files, tmp_path: Path, capsys) -> None:
    assert main(_cli(tiny_files, tmp_path / "a")) == 0
    plain = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(_cli(tiny_files, tmp_path / "b", "--variation-seed", "9", "--variation-strength", "0")) == 0
    zero = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.array_equal(np.asarray(Image.open(plain)), np.asarray(Image.open(zero)))


def test_n_images_with_a_variation_seed_are_variations_of_one_seed(tiny_files, tmp_path: Path, capsys) -> None:
    args = _cli(tiny_files, tmp_path, "-n", "2", "--variation-seed", "9", "--variation-strength", "0.2")
    assert main([*args[:1], "--steps", "1", *args[3:]]) == 0
    finals = capsys.readouterr().out.strip().splitlines()
    recorded = [json.loads((Path(f).parent / "config.json").read_text()) for f in finals]
    assert [(r["seed"], r["init"]["variation_seed"]) for r in recorded] == [(3, 9), (3, 10)]


@pytest.mark.parametrize(("flags", "sentence"), [
    (["--variation-seed", "9", "--variation-strength", "1.5"], "variation_strength must be between 0 and 1, not 1.5."),
    (["--variation-seed", "9", "--variation-strength", "-0.1"], "variation_strength must be between 0 and 1, not -0"),
    (["--variation-seed", "9"], "a variation seed needs a strength; give --variation-strength between 0 and 1"),
    (["--variation-strength", "0.2"], "a variation strength needs a variation seed to vary toward;"),
    (["--variation-seed", "-2", "--variation-strength", "0.2"], "variation_seed must be a non-negative integer"),
    (["--variation-seed", "9", "--variation-strength", "0.2", "--init-image", "{image}"],
     "a variation seed varies a random start, and init=image has none;"),
])
def test_bad_variation_settings_are_one_sentence_before_any_model_loads(flags, sentence, tmp_path: Path,
                                                                        capsys) -> None:
    Image.new("RGB", (32, 32)).save(tmp_path / "image.png")
    flags = [flag.replace("{image}", str(tmp_path / "image.png")) for flag in flags]
    # no model flags and --offline: an argument checked after a model load would fail on the missing weights
    code = main(["city at night", *flags, "--offline", "--weights-dir", str(tmp_path / "weights"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and sentence in err and len(err.splitlines()) == 1, err


def test_the_form_round_trips_the_variation_fields(tiny_files) -> None:
    for config in (_varied(tiny_files, 9, 0.1), tiny_run_config(tiny_files)):
        values = to_form(config)
        assert from_form(GenerationConfig, values) == config
    assert to_form(tiny_run_config(tiny_files))["variation_seed"] == -1
    with pytest.raises(ConfigError, match="needs a strength"):
        from_form(GenerationConfig, {**to_form(tiny_run_config(tiny_files)), "variation_seed": 4})


@pytest.fixture
def studio(tiny_pipeline, tmp_path: Path) -> Studio:
    return Studio(outputs_dir=tmp_path / "outputs", text_to_image=tiny_pipeline)


def test_vary_this_makes_a_new_run_with_the_same_seed_a_variation_seed_and_the_strength(studio: Studio,
                                                                                        tiny_files) -> None:
    session = studio.session()
    with pytest.raises(InputError, match="there is no image to vary yet"):
        variation(session, 0.1)
    list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=2, seed=5), session))
    base = session.folder
    config = variation(session, 0.2)
    assert config.seed == 5 and config.init.variation_seed is not None and config.init.variation_strength == 0.2
    assert config.replace(init=tiny_run_config(tiny_files).init) == tiny_run_config(tiny_files, steps=2, seed=5)
    assert variation(session, 0.2).init.variation_seed != config.init.variation_seed  # a fresh one each time
    list(text_to_image_job(studio, config, session))
    assert session.folder != base
    recorded = json.loads((session.folder / "config.json").read_text())
    assert recorded["seed"] == 5 and recorded["init"]["variation_seed"] == config.init.variation_seed
    with pytest.raises(InputError, match="between 0 and 1"):
        variation(session, 1.5)


def test_vary_this_refuses_an_image_without_a_random_start(studio: Studio, tiny_files, tmp_path: Path) -> None:
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    session = studio.session()
    init = {"init": "image", "init_image": str(tmp_path / "red.png")}
    list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=1, init=init), session))
    with pytest.raises(InputError, match="did not start from random noise"):
        variation(session, 0.1)


@pytest.fixture
def served(studio: Studio):
    with served_app(studio, preset=str(ROOT / "presets" / "fast.json")) as demo:
        yield demo


def test_vary_this_through_the_api(served, studio: Studio, tiny_files) -> None:
    from gradio_client import Client

    client = Client(served.local_url, verbose=False)
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/vary"]["parameters"]] == ["strength"]
    values = to_form(tiny_run_config(tiny_files, steps=2, seed=11))
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    client.predict(**{n: values.get(n) for n in names if n != "image_prompt_files"}, image_prompt_files=None,
                   api_name="/generate")
    status, _, result, *_ = client.predict(strength=0.3, api_name="/vary")
    assert "done in" in status and Path(result).name.endswith(".png")
    folders = sorted((p for p in studio.outputs_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    assert len(folders) == 2
    recorded = json.loads((folders[-1] / "config.json").read_text())
    assert recorded["seed"] == 11 and recorded["init"]["variation_strength"] == 0.3
    assert recorded["init"]["variation_seed"] is not None
    assert np.array_equal(np.asarray(Image.open(result)), np.asarray(Image.open(folders[-1] / "final.png")))
