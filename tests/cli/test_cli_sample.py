"""``python -m generator sample`` and ``--init prior`` with tiny official-format checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.cli.main import main
from generator.io.outputs import CONFIG_KEY, MODE_KEY, read_png_text
from tests.prior_factories import save_tiny_prior

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sos_prior(tmp_path_factory: pytest.TempPathFactory):
    return save_tiny_prior(tmp_path_factory.mktemp("prior"), "sos")


def _folder(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


@pytest.mark.parametrize(("size", "grid"), [(None, (16, 16)), (["80", "48"], (24, 40))])
def test_sample_writes_images_with_the_config_embedded(sos_prior, tmp_path: Path, size, grid) -> None:
    args = ["sample", "--transformer", str(sos_prior.checkpoint), "-n", "2", "--seed", "0",
            "--save-every", "8", "--video", "--out", str(tmp_path)]
    if size:
        args += ["--size", *size]
    result = subprocess.run([sys.executable, "-m", "generator", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr
    folder = _folder(tmp_path)
    samples = sorted(folder.glob("sample-*.png"))
    assert [p.name for p in samples] == ["sample-000.png", "sample-001.png"]
    assert Image.open(samples[0]).size == (grid[1] * 2, grid[0] * 2)
    text = read_png_text(samples[1])
    assert text[MODE_KEY] == "sample" and text["index"] == "1"
    config = json.loads(text[CONFIG_KEY])
    assert config["seed"] == 0 and config["size"] == [grid[1] * 2, grid[0] * 2]
    assert config["model"] == str(sos_prior.checkpoint)
    assert json.loads((folder / "config.json").read_text()) == config
    assert (folder / "final.png").is_file() and (folder / "video.mp4").is_file()
    assert len(list((folder / "frames").iterdir())) == grid[0] // 8


def test_sample_from_repeats_the_same_images(sos_prior, tmp_path: Path, capsys) -> None:
    assert main(["sample", "--transformer", str(sos_prior.checkpoint), "-n", "1", "--seed", "4",
                 "--out", str(tmp_path / "a")]) == 0
    first = _folder(tmp_path / "a") / "sample-000.png"
    assert main(["sample", "--from", str(first), "--out", str(tmp_path / "b")]) == 0
    again = _folder(tmp_path / "b") / "sample-000.png"
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "16", "16"], "smaller than this model's 16x16 training window"),
        (["--top-p", "1.5"], "top_p must be in (0, 1]"),
        (["--preset", "fast"], "preset fast is for text-to-image, not sample"),
        (["--model", "nope_transformer"], "neither a file nor a known transformer name"),
    ],
)
def test_sample_errors_are_one_line(sos_prior, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    base = ["sample", "--transformer", str(sos_prior.checkpoint), "--out", str(tmp_path)]
    if "--model" in args:
        base = ["sample", "--out", str(tmp_path)]
    assert main([*base, *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_registry_prior_offline_says_how_to_get_it(tmp_path: Path, capsys) -> None:
    assert main(["sample", "--model", "ffhq", "--offline", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "ffhq_transformer" in err and "by hand" in err and "k00.fr" in err


def test_init_prior_starts_clip_guidance_from_sampled_codes(sos_prior, tiny_files, tmp_path: Path, capsys) -> None:
    args = ["city at night", "--prior", str(sos_prior.checkpoint), "--clip-model", str(tiny_files.clip_config),
            str(tiny_files.clip_weights), "--steps", "3", "--size", "48", "40", "--cutn", "4", "--seed", "2",
            "--out", str(tmp_path)]
    assert main(args) == 0
    config = json.loads((_folder(tmp_path) / "config.json").read_text())
    assert config["init"]["init"] == "prior"
    assert config["models"]["prior"] == config["models"]["vqgan"] == str(sos_prior.checkpoint)
    assert Image.open(_folder(tmp_path) / "final.png").size == (48, 40)
    assert "config names other models" not in capsys.readouterr().err
