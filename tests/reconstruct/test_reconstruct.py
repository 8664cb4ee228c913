"""The reconstruct mode, added through the registry alone: its command, its tab, its files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator import modes
from generator.cli.main import main
from generator.io.images import pil_to_tensor, tensor_to_pil
from generator.reconstruct.config import ReconstructConfig
from generator.reconstruct.pipeline import Reconstructor, planned_size, psnr
from generator.train.studio import draw_landscape, draw_pattern
from generator.workbench import Workbench


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)).save(path)
    return path


def test_the_command_writes_the_reconstruction_its_input_and_a_comparison(tiny_files, photo: Path, tmp_path: Path,
                                                                          capsys) -> None:
    out = tmp_path / "out"
    code = main(["reconstruct", str(photo), "--vqgan", str(tiny_files.vqgan), "--vqgan-config",
                 str(tiny_files.vqgan_config), "--out", str(out), "--device", "cpu"])
    assert code == 0
    final = Path(capsys.readouterr().out.strip().splitlines()[-1])
    folder = final.parent
    assert {p.name for p in folder.iterdir()} >= {"final.png", "input.png", "compare.png", "config.json", "run.json"}
    assert Image.open(final).size == (50, 36) == Image.open(folder / "input.png").size  # rounded to the factor 2
    assert Image.open(folder / "compare.png").size[0] > 2 * 50
    record = json.loads((folder / "run.json").read_text())
    assert record["mode"] == "reconstruct" and record["status"] == "done"
    assert 0 < record["timings"]["psnr"] < 60 and 1 <= record["timings"]["codes_used"] <= 16
    assert json.loads((folder / "config.json").read_text())["size"] == [50, 36]


def test_the_reconstruction_is_the_vqgan_round_trip(tiny_files, photo: Path) -> None:
    bench = Workbench("cpu")
    config = ReconstructConfig(image=str(photo), vqgan=str(tiny_files.vqgan),
                               vqgan_config=str(tiny_files.vqgan_config))
    reconstructor = Reconstructor.from_workbench(config, bench)
    done = list(reconstructor.run(config))[-1]
    reconstruction, original = done.images
    vqgan = bench.vqgan(config.vqgan, config.vqgan_config)
    pixels = pil_to_tensor(original)
    with torch.no_grad():
        expected = tensor_to_pil((vqgan.decode_indices(vqgan.encode_to_indices(pixels * 2 - 1)).clamp(-1, 1) + 1) / 2)
    assert np.array_equal(np.asarray(reconstruction), np.asarray(expected))
    assert done.timings["psnr"] == pytest.approx(psnr(pixels, pil_to_tensor(reconstruction)), abs=0.5)
    assert bench.loads["vqgan"] == 1


def test_size_planning_and_psnr() -> None:
    assert planned_size((1000, 500), ReconstructConfig(image="x", max_side=512), 16) == (512, 256)
    assert planned_size((40, 30), ReconstructConfig(image="x"), 16) == (32, 16)
    assert planned_size((5, 5), ReconstructConfig(image="x"), 16) == (16, 16)  # at least one cell
    assert planned_size((999, 999), ReconstructConfig(image="x", size=(100, 70)), 16) == (96, 64)
    image = torch.rand(1, 3, 8, 8)
    assert psnr(image, image) == float("inf") and 19 < psnr(image, (image + 0.1).clamp(0, 1)) < 21


def test_the_registry_is_all_the_front_ends_needed_to_know(tiny_files, tmp_path: Path) -> None:
    """The mode is listed by the command line and gets a tab in the web UI, named nowhere else."""
    from generator.cli.main import commands, listing

    mode = modes.get("reconstruct")
    assert commands()["reconstruct"][0] == mode.cli and any(line.split()[0] == "reconstruct" for line in listing())
    import app
    from generator.webui.studio import Studio

    demo = app.build_demo(studio=Studio(outputs_dir=tmp_path / "out", device="cpu"))
    assert "reconstruct" in {fn.api_name for fn in demo.fns.values()}
    assert ReconstructConfig(image="x").to_dict()["image"] == "x"


def test_an_empty_image_is_one_sentence() -> None:
    from generator.errors import ConfigError

    with pytest.raises(ConfigError, match="there is no image to reconstruct"):
        ReconstructConfig(image=" ")


def test_the_studio_decoder_reproduces_drawn_images_it_never_saw(studio_decoder, tiny_files, tmp_path: Path,
                                                                 capsys) -> None:
    """The reconstruct command with a decoder that reproduces images (tests/studio_decoder.py):
    landscapes and patterns drawn from a seed the training never used come back close, far
    closer than through the random tiny VQGAN."""
    rng = random.Random(12345)
    scores: dict[str, list[float]] = {"studio": [], "random": []}
    for index, draw in enumerate((draw_landscape, draw_pattern) * 2):
        image = tmp_path / f"held-out-{index}.png"
        draw(rng).save(image)
        for name, files in (("studio", studio_decoder), ("random", tiny_files)):
            vqgan = files.checkpoint if name == "studio" else files.vqgan
            config = files.config if name == "studio" else files.vqgan_config
            assert main(["reconstruct", str(image), "--vqgan", str(vqgan), "--vqgan-config", str(config), "--out",
                         str(tmp_path / name), "--device", "cpu"]) == 0
            folder = Path(capsys.readouterr().out.strip().splitlines()[-1]).parent
            scores[name].append(json.loads((folder / "run.json").read_text())["timings"]["psnr"])
    # measured (800 steps): studio 17.3, 10.6, 16.4, 14.2 dB; random 9.6, 7.1, 9.9, 10.4 dB
    studio, noise = scores["studio"], scores["random"]
    assert all(ours > theirs + 2 for ours, theirs in zip(studio, noise, strict=True)), scores
    assert min(studio[0::2]) > 14 and sum(studio) / 4 > sum(noise) / 4 + 4, scores  # landscapes come back closest
