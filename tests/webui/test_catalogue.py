"""Model lists for the web UI's dropdowns: installed first, and a hint for what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.webui.catalogue import model_choices, model_hint
from generator.weights import store


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv(store.WEIGHTS_DIR_ENV, str(folder))
    return folder


def _touch(path: Path, text: str = "") -> Path:
    path.write_text(text)
    return path


def test_upscalers_list_installed_entries_and_own_files_first(weights: Path) -> None:
    _touch(weights / "realesr-general-x4v3.pth")
    _touch(weights / "realesr-general-wdn-x4v3.pth")  # its companion (the denoise blend)
    own = _touch(weights / "my_esrgan.pth")
    _touch(weights / "half.pth.part")  # a partial download is not a model
    _touch(weights / ".hidden.pth")
    choices = model_choices("upscaler")
    values = [value for _, value in choices]
    registry = store.names_of_kind("upscaler")
    installed = ["realesr_general_x4v3", "realesr_general_wdn_x4v3"]
    assert values[:3] == [*installed, str(own)]
    assert values[3:] == [name for name in registry if name not in installed]  # registry order
    labels = dict((value, label) for label, value in choices)
    assert labels["realesr_general_x4v3"] == "realesr_general_x4v3 · installed"
    assert labels[str(own)] == "my_esrgan.pth · in the weights folder"
    assert labels["realesrgan_x4plus"] == "realesrgan_x4plus · not installed (67.0 MB download)"


def test_a_vqgan_is_installed_only_with_its_yaml_and_own_files_are_sorted_by_kind(weights: Path) -> None:
    _touch(weights / "vqgan_imagenet_f16_16384.ckpt")
    labels = dict((value, label) for label, value in model_choices("vqgan"))
    assert labels["vqgan_imagenet_f16_16384"] == "vqgan_imagenet_f16_16384 · not installed (692 B download)"
    _touch(weights / "vqgan_imagenet_f16_16384.yaml")
    vq = _touch(weights / "my_vq.ckpt")
    _touch(weights / "my_vq.yaml", "model:\n  params:\n    ddconfig: {}\n")
    prior = _touch(weights / "my_prior.ckpt")
    _touch(weights / "my_prior.yaml", "model:\n  params:\n    transformer_config: {}\n")
    upscaler = _touch(weights / "x4.pth")
    vqgans = [value for _, value in model_choices("vqgan")]
    assert vqgans[:3] == ["vqgan_imagenet_f16_16384", str(prior), str(vq)]
    assert str(upscaler) not in vqgans
    transformers = [value for _, value in model_choices("transformer")]
    assert str(prior) in transformers and str(vq) not in transformers
    labels = dict((value, label) for label, value in model_choices("transformer"))
    assert labels["ffhq_transformer"] == "ffhq_transformer · not installed (download by hand)"


def test_hints_say_how_to_get_a_model_before_any_button(weights: Path) -> None:
    _touch(weights / "RealESRGAN_x4plus.pth")
    assert model_hint("upscaler", "realesrgan_x4plus") == ""
    assert model_hint("upscaler", "") == ""
    assert model_hint("upscaler", "realesr_general_x4v3", offline=False) == (
        "realesr_general_x4v3 is not downloaded yet; it downloads on first use (9.8 MB), or run "
        "`python -m generator download realesr_general_x4v3` on the server.")
    offline = model_hint("upscaler", "realesr_general_x4v3", offline=True)
    assert "--offline is set" in offline and offline.count(". ") == 0
    manual = model_hint("transformer", "ffhq")  # the short name of ffhq_transformer
    assert manual.startswith("ffhq_transformer (") and "by hand" in manual and str(weights) in manual
    assert model_hint("vqgan", "realesrgan_x4plus") == (
        "realesrgan_x4plus is upscaler weights, not vqgan weights; choose a vqgan from the list.")
    assert "neither a registry vqgan name nor a file" in model_hint("vqgan", "no_such_model")
    own = _touch(weights / "mine.ckpt")
    assert model_hint("vqgan", str(own)) == ""


def test_nothing_is_hashed_or_downloaded(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from generator.weights import digests, download

    def forbidden(*args, **kwargs):
        raise AssertionError("the catalogue must not hash or download")

    for module, name in ((digests, "cached_sha256"), (digests, "sha256_of"), (download, "download_file"),
                         (download, "download_member")):
        monkeypatch.setattr(module, name, forbidden)
    _touch(weights / "RealESRGAN_x4plus.pth")
    assert model_choices("upscaler")[0] == ("realesrgan_x4plus · installed", "realesrgan_x4plus")
    assert model_hint("upscaler", "realesrgan_x2plus", offline=False).startswith("realesrgan_x2plus is not downloaded")


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        model_choices("config")
