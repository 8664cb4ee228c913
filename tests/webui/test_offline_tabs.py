"""``python app.py --offline``: the Prior (Sample) and Upscale tabs use local files only, and a
missing model is one sentence that says how to get it."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

import app
from generator.config import SampleConfig, UpscaleConfig
from generator.errors import GeneratorError
from generator.io import fetch
from generator.webui.catalogue import model_hint
from generator.webui.jobs import sample_job, upscale_job
from generator.webui.studio import Studio
from generator.weights import download, store

SENTENCE = "and --offline is set; download it with `python -m generator download {}` on a machine with internet"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download, image fetch or socket connection fails the test."""
    def called(*args, **kwargs):
        pytest.fail(f"the network was used in offline mode: {args[:1]}")

    for module, name in ((download, "download_file"), (download, "download_member"),
                         (fetch.urllib.request, "build_opener"), (fetch, "_public_opener")):
        monkeypatch.setattr(module, name, called)
    monkeypatch.setattr("socket.socket.connect", called)


@pytest.fixture
def offline_studio(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Studio:
    """The studio of ``python app.py --offline --lazy`` over an empty weights folder."""
    monkeypatch.setenv(store.OFFLINE_ENV, "")  # only the flag says offline; restored after the test
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: None)
    built: dict = {}
    build_demo = app.build_demo
    monkeypatch.setattr(app, "build_demo", lambda **kwargs: built.update(kwargs) or build_demo(**kwargs))
    weights = tmp_path / "weights"
    weights.mkdir()
    assert app.main(["--offline", "--lazy", "--device", "cpu", "--weights-dir", str(weights),
                     "--out", str(tmp_path / "out")]) == 0
    return built["studio"]


def _error(job) -> str:
    with pytest.raises(GeneratorError) as caught:
        list(job)
    return str(caught.value)


def test_sample_and_upscale_say_one_sentence_for_a_missing_model_and_never_reach_the_network(
        offline_studio: Studio, no_network, tmp_path: Path) -> None:
    studio = offline_studio
    text = _error(sample_job(studio, SampleConfig(model="sflckr_transformer", n=1), studio.session()))
    assert "is not in" in text and SENTENCE.format("sflckr_transformer") in text
    image = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(image)
    text = _error(upscale_job(studio, str(image), UpscaleConfig(upscale_model="realesrgan_x4plus"), studio.session()))
    assert "is not in" in text and SENTENCE.format("realesrgan_x4plus") in text
    # The whole process is offline: an image address (a prior's image to complete) is not fetched either.
    with pytest.raises(GeneratorError, match="offline mode forbids fetching"):
        fetch.fetch_bytes("https://example.com/cat.png", "image to complete")
    # The menus' hints say the same before any button is pressed.
    hint = model_hint("upscaler", "realesrgan_x4plus", studio.weights_dir, studio.offline)
    assert "--offline is set" in hint and "downloads on first use" not in hint
