"""Rough edges found by running the commands as a new user would: no empty run folders,
messages that name the flag of the command in use, --from across commands, refused extra
options, implausible prompt weights, log lines above the progress bar, images by URL."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.cli.main import main
from generator.config import GenerationConfig, SampleConfig
from generator.errors import InputError
from generator.io.images import open_image
from generator.io.outputs import png_bytes, png_text
from generator.sample.pipeline import Sampler
from generator.text_to_image.pipeline import TextToImage
from tests.factories import tiny_run_config
from tests.prior_factories import save_tiny_prior

FAST = ["--size", "32", "32", "--cutn", "4", "--steps", "2"]


@pytest.mark.parametrize("bad", [
    ["city:0"],  # a weight of zero
    ["city", "--augments", "sparkle"],  # an unknown augmentation
    ["city", "--init-image", "no-such-image.png"],
    ["", "--image-prompts", ""],  # nothing to draw
])
def test_a_run_that_fails_its_checks_leaves_no_folder(tiny_pipeline, tiny_files, tmp_path: Path, capsys,
                                                      bad: list[str]) -> None:
    out = tmp_path / "out"
    code = main([*bad, *tiny_files.cli_args(), *FAST, "--out", str(out)], make_pipeline=lambda *a, **k: tiny_pipeline)
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
    assert not out.exists() or not any(out.iterdir())


def test_sampling_with_a_bad_class_or_map_leaves_no_folder(tmp_path: Path, capsys) -> None:
    prior = save_tiny_prior(tmp_path / "prior", "class")
    out = tmp_path / "out"
    for extra in (["--class", "99"], ["--condition", str(tmp_path / "none.png")]):
        code = main(["sample", "--model", str(prior.checkpoint), "--transformer-config", str(prior.config), "-n", "1",
                     "--device", "cpu", "--out", str(out), *extra])
        assert code == 1 and capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
    assert not out.exists() or not any(out.iterdir())


def test_a_class_prior_without_a_class_names_the_flag_of_the_command_in_use(tiny_files, tmp_path: Path) -> None:
    prior = save_tiny_prior(tmp_path, "class")
    models = tiny_files.models()
    with_prior = GenerationConfig(models=models).to_dict()["models"] | {"prior": str(prior.checkpoint),
                                                                        "prior_config": str(prior.config)}
    config = tiny_run_config(tiny_files, models=with_prior, init={"init": "prior"})
    pipeline = TextToImage.from_pretrained(config.models, device="cpu")
    with pytest.raises(InputError, match="give --prior-class N"):
        list(pipeline.run(config))
    sampler = Sampler.from_pretrained(str(prior.checkpoint), str(prior.config), device="cpu")
    with pytest.raises(InputError, match="give --class N"):
        list(sampler.run(SampleConfig(model=str(prior.checkpoint), n=1)))


def test_a_class_for_a_prior_that_takes_none_is_refused(tmp_path: Path) -> None:
    prior = save_tiny_prior(tmp_path, "sos")
    sampler = Sampler.from_pretrained(str(prior.checkpoint), str(prior.config), device="cpu")
    with pytest.raises(InputError, match="not class-conditional.*leave --class out"):
        list(sampler.run(SampleConfig(model=str(prior.checkpoint), n=1, class_label=3)))


def test_from_with_an_output_of_another_command_names_that_command(tiny_pipeline, tiny_files, tmp_path: Path,
                                                                   capsys) -> None:
    sample_png = tmp_path / "final.png"
    config = SampleConfig(seed=4).to_dict()
    sample_png.write_bytes(png_bytes(Image.new("RGB", (8, 8)), png_text(config, prompt="ffhq sample", seed=4,
                                                                         mode="sample")))
    code = main(["--from", str(sample_png), "--out", str(tmp_path / "out")],
                make_pipeline=lambda *a, **k: tiny_pipeline)
    assert code == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message == (f"error: {sample_png} was made by `python -m generator sample`; repeat it with "
                       f"`python -m generator sample --from {sample_png}`.")


def test_an_implausible_prompt_weight_warns_and_shows_how_to_escape(caplog: pytest.LogCaptureFixture) -> None:
    from generator.text_to_image.prompts import parse_prompts

    with caplog.at_level(logging.WARNING, logger="generator.text_to_image.prompts"):
        (prompt,) = parse_prompts("http://example.com:8080")
    assert prompt.weight == 8080 and "http://example.com\\:8080" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="generator.text_to_image.prompts"):
        parse_prompts("a cat:2 | a dog:-50")
    assert caplog.text == ""


def test_log_lines_print_above_the_bar_and_a_new_stage_resets_its_fields(tmp_path: Path, capsys) -> None:
    from generator.cli.console import present
    from generator.events import Done, Progress
    from generator.runs import GenerationRun, RunState

    logger = logging.getLogger("generator.test_stage")

    def events(state: RunState):
        for step in (1, 2):
            state.step = step
            yield Progress("optimise", step, 2, loss=0.5)
            logger.warning("a note in the middle of the stage")
        yield Progress("upscale", 1, 3)
        yield Done((Image.new("RGB", (8, 8)),), dict(state.config), 1)

    state = RunState(mode="text-to-image", label="x", config=tiny_config_dict(), total=2)
    from generator.cli.common import configure_logging

    configure_logging()
    present(GenerationRun(events(state), state), tmp_path, unit="step")
    err = capsys.readouterr().err
    pieces = [piece for line in err.split("\n") for piece in line.split("\r")]
    notes = [piece for piece in pieces if "a note in the middle" in piece]
    assert notes and all(piece.startswith("warning: a note in the middle") for piece in notes)
    upscale_bars = [piece for piece in pieces if piece.startswith("upscale")]
    assert upscale_bars and all("loss=" not in piece for piece in upscale_bars)


def tiny_config_dict() -> dict:
    return GenerationConfig(prompts="x", seed=1, size=(16, 16), steps=2).to_dict()


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_given_by_url_are_fetched_and_never_mangled(file_server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GENERATOR_OFFLINE", raising=False)
    file_server.files["/a.png"] = _png((200, 30, 30))
    file_server.content_types["/a.png"] = "image/png"
    image = open_image(file_server.url("/a.png"), what="init image")
    assert image.size == (40, 30) and image.getpixel((0, 0)) == (200, 30, 30)
    missing = file_server.url("/missing.png")
    with pytest.raises(InputError, match=f"could not fetch the init image {missing} \\(HTTP 404 Not Found\\)"):
        open_image(missing, what="init image")
    file_server.files["/big.png"] = b"\x00" * 100
    monkeypatch.setattr("generator.io.fetch.MAX_FETCH_BYTES", 50)
    with pytest.raises(InputError, match="larger than|more than"):
        open_image(file_server.url("/big.png"), what="init image")
    monkeypatch.setenv("GENERATOR_OFFLINE", "1")
    with pytest.raises(InputError, match=f"offline mode forbids fetching the init image {missing}"):
        open_image(missing, what="init image")


def test_an_init_image_by_url_starts_where_the_same_file_does(tiny_pipeline, tiny_files, file_server,
                                                              tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("GENERATOR_OFFLINE", raising=False)
    pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    local = tmp_path / "init.png"
    Image.fromarray(pixels).save(local)
    file_server.files["/init.png"] = local.read_bytes()
    latents = []
    for source in (str(local), file_server.url("/init.png")):
        config = tiny_run_config(tiny_files, init={"init": "image", "init_image": source})
        loop = tiny_pipeline.new_loop(config)
        list(tiny_pipeline.start_image(loop, config, (32, 32)))
        latents.append(loop.latents())
    assert torch.equal(latents[0], latents[1])
