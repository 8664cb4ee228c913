"""Zip checkpoints with compressed records (as older PyTorch and some repackagers wrote them,
e.g. the realesr-animevideov3.pth copy users have) load through every loader; only a
really damaged file is called truncated or corrupt."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from spandrel import ModelLoader

from generator.errors import CheckpointError
from tests.factories import save_lightning_checkpoint, tiny_vqgan
from tests.upscaler_factories import compact_state, save_upscaler


def _recompress(path: Path) -> Path:
    """The same checkpoint with every record deflated (so it cannot be memory-mapped)."""
    target = path.with_name(f"compressed-{path.name}")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, source.read(info.filename))
    with zipfile.ZipFile(target) as archive:
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())
    return target


def test_a_compressed_vqgan_checkpoint_loads(tmp_path: Path) -> None:
    from generator.decoder.loader import load_vqgan

    model = tiny_vqgan(seed=3)
    path = _recompress(save_lightning_checkpoint(model.state_dict(), tmp_path / "vqgan.ckpt"))
    loaded = load_vqgan(path, model.config)
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_a_compressed_prior_checkpoint_loads(tmp_path: Path) -> None:
    from generator.sample.loader import load_prior
    from tests.prior_factories import save_tiny_prior

    prior = save_tiny_prior(tmp_path, "sos")
    loaded = load_prior(_recompress(prior.checkpoint), prior.config)
    for key, tensor in prior.gpt.state_dict().items():
        assert torch.equal(loaded.gpt.state_dict()[key], tensor), key


def test_a_compressed_clip_checkpoint_loads(tmp_path: Path) -> None:
    from generator.text_to_image.loader import load_clip
    from tests.clip_factories import tiny_clip_module, write_tiny_clip

    config, weights = write_tiny_clip(tmp_path, seed=5)
    clip = load_clip(config, str(_recompress(weights)))
    expected = tiny_clip_module(seed=5).state_dict()
    assert all(torch.equal(clip.model.state_dict()[key], tensor) for key, tensor in expected.items())


def test_a_compressed_upscaler_upscales_through_the_cli_as_spandrel_computes(tmp_path: Path, capsys) -> None:
    from generator.cli.main import main

    state = compact_state(seed=2)
    path = _recompress(save_upscaler(state, tmp_path / "animevideo.pth", container="params"))
    image = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    source = tmp_path / "in.png"
    Image.fromarray(image).save(source)
    assert main(["upscale", str(source), "--model", str(path), "--out", str(tmp_path / "out"), "--device", "cpu",
                 "--tile", "0"]) == 0
    written = Path(capsys.readouterr().out.strip().splitlines()[-1])
    network = ModelLoader().load_from_state_dict(state).model.eval()
    with torch.no_grad():
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        expected = (network(pixels).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(np.asarray(Image.open(written), dtype=int) - expected.astype(int)).max() <= 1


def test_only_a_really_damaged_compressed_file_is_called_corrupt(tmp_path: Path) -> None:
    from generator.weights.checkpoints import read_checkpoint

    path = _recompress(save_upscaler(compact_state(), tmp_path / "model.pth"))
    assert set(read_checkpoint(path)) == {"params_ema"}
    damaged = tmp_path / "damaged.pth"
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\x00" * 64  # inside a deflated record
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt.*download it again"):
        read_checkpoint(damaged)
