"""PNG info: the settings an output PNG carries, or one sentence when it carries none."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from generator.config import GenerationConfig
from generator.errors import InputError
from generator.webui.jobs import text_to_image_job
from generator.webui.pnginfo import read_settings
from generator.webui.studio import Studio
from tests.factories import tiny_run_config


def test_the_settings_of_a_real_output_png(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    studio = Studio(outputs_dir=tmp_path / "out", text_to_image=tiny_pipeline)
    config = tiny_run_config(tiny_files, steps=2, seed=17)
    final = list(text_to_image_job(studio, config, studio.session()))[-1].result
    settings = read_settings(final)
    assert settings.mode == "text-to-image"
    assert settings.config["seed"] == 17 and settings.config["prompts"] == "city at night"
    assert settings.summary == 'text-to-image · "city at night" · seed 17 · 32x32 · 2 steps · tiny_vqgan.ckpt'
    loaded = settings.run_config()
    assert isinstance(loaded, GenerationConfig) and loaded == GenerationConfig.from_dict(settings.config)
    assert loaded.seed == 17 and loaded.steps == 2


def test_files_without_our_settings_get_one_sentence(tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (4, 4)).save(jpeg)
    text = tmp_path / "notes.png"
    text.write_text("secret line of a text file\n")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(plain.read_bytes()[:30])
    damaged = tmp_path / "damaged.png"
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("generator-config", "{not json")
    Image.new("RGB", (4, 4)).save(damaged, pnginfo=info)
    cases = {
        plain: "plain.png holds no settings of this tool (made elsewhere, or its text was stripped); drop a PNG "
               "written by this tool, such as a run's final.png.",
        jpeg: "photo.jpg cannot be read as a PNG image; drop a PNG written by this tool, such as a run's final.png.",
        text: "notes.png cannot be read as a PNG image; drop a PNG written by this tool, such as a run's final.png.",
        truncated: "cut.png cannot be read as a PNG image; drop a PNG written by this tool, such as a run's final.png.",
        tmp_path / "missing.png": "missing.png cannot be read as a PNG image; drop a PNG written by this tool, such "
                                  "as a run's final.png.",
        damaged: "the settings embedded in damaged.png are damaged (not a JSON object); drop a PNG written by this "
                 "tool, such as a run's final.png.",
    }
    for path, sentence in cases.items():
        with pytest.raises(InputError) as caught:
            read_settings(path)
        assert str(caught.value) == sentence
        assert str(tmp_path) not in str(caught.value)  # the file's name only, never a server path


def test_settings_of_an_upscale_cannot_be_loaded_into_a_tab(tmp_path: Path) -> None:
    from generator.io.outputs import png_text

    path = tmp_path / "up.png"
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in png_text({"upscale": 4.0}, prompt="x", seed=0, mode="upscale").items():
        info.add_text(key, value)
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    settings = read_settings(path)
    assert settings.mode == "upscale" and settings.config == {"upscale": 4.0}
    with pytest.raises(InputError, match="settings of a upscale output cannot be loaded"):
        settings.run_config()
