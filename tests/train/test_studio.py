"""The studio model recipe (``python -m generator train studio``), on a short schedule: images
drawn here in two classes, the tiny VQGAN and a class prior trained on them and registered,
and the picture of the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from generator.cli.main import main
from generator.decoder.loader import load_vqgan
from generator.sample.loader import load_prior
from generator.train.studio import CLASSES, IMAGE_SIDE, write_images


def test_the_drawn_images_are_two_distinct_classes_the_same_for_a_seed(tmp_path: Path) -> None:
    first, again = write_images(tmp_path / "a", per_class=3), write_images(tmp_path / "b", per_class=3)
    for name in CLASSES:
        files = sorted((first / name).glob("*.png"))
        assert len(files) == 3 and Image.open(files[0]).size == (IMAGE_SIDE, IMAGE_SIDE)
        assert all(f.read_bytes() == (again / name / f.name).read_bytes() for f in files)
    landscape, pattern = (np.asarray(Image.open(first / name / "000.png"), float) for name in CLASSES)
    assert landscape[:10].std() < landscape.std()  # a smooth sky over the hills, not noise
    assert not np.array_equal(landscape, pattern)


def test_the_command_trains_and_registers_a_vqgan_and_a_class_prior(tmp_path: Path, capsys) -> None:
    weights = tmp_path / "weights"
    assert main(["train", "studio", "--vqgan-steps", "30", "--prior-steps", "4", "--device", "cpu", "--out",
                 str(tmp_path / "out"), "--weights-dir", str(weights), "--threads", "1"]) == 0
    vqgan_path, prior_path = (Path(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert (vqgan_path.name, prior_path.name) == ("studio_vqgan.ckpt", "studio_transformer.ckpt")
    assert vqgan_path.parent == prior_path.parent == weights
    vqgan = load_vqgan(vqgan_path)
    prior = load_prior(prior_path)
    assert prior.spec.conditioning == "class" and prior.spec.n_classes == len(CLASSES)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert vqgan.decode(vqgan.quantize(vqgan.encode(image)).z_q).shape == (1, 3, 32, 32)
    sheet = Image.open(tmp_path / "out" / "studio-model" / "studio.png")
    # originals, rebuilt, then a row of samples per class as large as the images
    assert sheet.width >= 8 * IMAGE_SIDE and sheet.height >= 4 * IMAGE_SIDE
    assert vqgan.downsample_factor == 4 and vqgan.n_codes == 512

    # made again into the same folder: a new studio folder, the models replaced, nothing of the first lost
    first = (tmp_path / "out" / "studio-model" / "studio.png").read_bytes()
    assert main(["train", "studio", "--vqgan-steps", "2", "--prior-steps", "1", "--device", "cpu", "--out",
                 str(tmp_path / "out"), "--weights-dir", str(weights), "--threads", "1"]) == 0
    assert "studio-model-2/studio.png" in capsys.readouterr().err
    assert (tmp_path / "out" / "studio-model" / "studio.png").read_bytes() == first
    assert load_vqgan(vqgan_path).state_dict()["decoder.conv_out.weight"].ne(
        vqgan.state_dict()["decoder.conv_out.weight"]).any()  # the new studio VQGAN is the registered one
