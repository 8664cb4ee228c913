"""The ESRGAN stage: loading Real-ESRGAN-format files, seamless tiles, precision and memory
fall-backs, alpha/greyscale/16-bit images, and the upscale command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from PIL import Image

from generator.cli.main import main
from generator.errors import CheckpointError, ConfigError, InputError
from generator.events import Progress
from generator.io.image_data import ImageData, read_image_data
from generator.io.outputs import CONFIG_KEY, MODE_KEY, read_png_text
from generator.upscale.loader import load_upscaler
from generator.upscale.tiles import run_to_end, tile_cores, upscale_image, upscale_pixels
from generator.weights import store
from generator.weights.store import WeightFile
from tests.upscale.helpers import events_of
from tests.upscale.helpers import image as _image
from tests.upscaler_factories import compact_state, save_upscaler

# bf16 tiles may differ from the untiled bf16 result where oneDNN picks other kernels for other
# tile widths: by one bf16 step of values near 1 (2 grey levels) at most. Float32 tiles are exact.
BF16_SEAM_TOLERANCE = 2**-7


@pytest.mark.parametrize("name", ["rrdb", "rrdb_bare", "rrdb_plain"])
def test_params_ema_params_and_bare_files_load_the_same_network(files: dict, name: str) -> None:
    reference = load_upscaler(str(files["rrdb"]))
    upscaler = load_upscaler(str(files[name]))
    assert upscaler.scale == 4 and upscaler.architecture == "ESRGAN"
    x = torch.rand(1, 3, 9, 7)
    assert torch.equal(upscaler.descriptor(x), reference.descriptor(x))
    compact = load_upscaler(str(files["compact"]))
    assert compact.scale == 2 and "Compact" in compact.architecture and compact.tile_pad == 5


ROUNDING = 1e-5
"""Exact but for float rounding: a CPU's convolution kernels may add up in another order for an
input of another size (seen on AMD EPYC); a missing pixel of context is ~1e-2 off."""


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(("name", "size", "tile"), [("compact", (37, 53), 16), ("compact16", (45, 39), 20),
                                                   ("rrdb", (29, 45), 20), ("rrdb_x2", (31, 43), 18),
                                                   ("compact", (33, 33), 0)])
def test_tiled_output_equals_untiled_output(files: dict, name: str, size: tuple[int, int], tile: int,
                                            precision: str) -> None:
    upscaler = load_upscaler(str(files[name]))
    pixels = torch.from_numpy(_image(*size).transpose(2, 0, 1).copy())[None]
    untiled = run_to_end(upscale_pixels(upscaler, pixels, tile=0, precision=precision))
    events, tiled = events_of(upscale_pixels(upscaler, pixels, tile=tile, precision=precision))
    assert tiled.shape == (1, 3, size[0] * upscaler.scale, size[1] * upscaler.scale)
    assert tiled.device.type == "cpu" and tiled.dtype == torch.float32
    if precision == "fp32" and name.startswith("compact"):  # the context covers the receptive field
        assert (tiled - untiled).abs().max().item() <= ROUNDING
    elif precision == "fp32":  # RRDBNet's 24 px context is less than its receptive field
        assert ((tiled * 255).round() - (untiled * 255).round()).abs().max().item() <= 1.0
    else:
        assert (tiled - untiled).abs().max().item() <= BF16_SEAM_TOLERANCE
    expected_tiles = len(tile_cores(*size, -(-tile // upscaler.multiple_of) * upscaler.multiple_of)) if tile else 1
    assert [e.step for e in events if isinstance(e, Progress)] == list(range(1, expected_tiles + 1))


@pytest.mark.parametrize(("name", "size"), [("rrdb_x2", (31, 43)), ("compact", (9, 7)), ("rrdb", (5, 11))])
def test_unclamped_output_is_spandrels_output_before_the_clamp(files: dict, name: str, size: tuple[int, int]) -> None:
    upscaler = load_upscaler(str(files[name]))
    pixels = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(2)) * 3 - 1  # out of range: clamps
    with torch.inference_mode():
        raw = upscaler.unclamped(pixels)
        clamped = upscaler.descriptor(pixels.clone())
    assert raw.shape == clamped.shape == (1, 3, size[0] * upscaler.scale, size[1] * upscaler.scale)
    assert (raw < 0).any() or (raw > 1).any()
    assert torch.equal(raw.clamp(0, 1), clamped)


def test_tile_cores_cover_the_image_once() -> None:
    cores = tile_cores(37, 53, 16)
    covered = np.zeros((37, 53), dtype=int)
    for y, x, h, w in cores:
        covered[y : y + h, x : x + w] += 1
    assert (covered == 1).all() and len(cores) == 3 * 4


def test_alpha_greyscale_and_output_scale(files: dict) -> None:
    upscaler = load_upscaler(str(files["compact"]))
    rgba = _image(12, 10, 4)
    rgba[..., 3] = 1.0
    rgba[:6, :, 3] = 0.0
    result = run_to_end(upscale_image(upscaler, ImageData(rgba), tile=0))
    assert result.pixels.shape == (24, 20, 4)
    rgb = torch.from_numpy(rgba[..., :3].transpose(2, 0, 1).copy())[None]
    colour = run_to_end(upscale_pixels(upscaler, rgb, tile=0))
    mask = torch.from_numpy(np.repeat(rgba[..., 3:], 3, axis=2).transpose(2, 0, 1).copy())[None]
    alpha = run_to_end(upscale_pixels(upscaler, mask, tile=0))[0].mean(dim=0).clamp(0, 1)
    assert np.allclose(result.pixels[..., :3], colour[0].permute(1, 2, 0).clamp(0, 1).numpy(), atol=1e-6)
    assert np.allclose(result.pixels[..., 3], alpha.numpy(), atol=1e-6)  # alpha went through the network
    resized = run_to_end(upscale_image(upscaler, ImageData(rgba), tile=0, alpha="resize"))
    lanczos = np.asarray(Image.fromarray(rgba[..., 3], mode="F").resize((20, 24), Image.Resampling.LANCZOS))
    assert np.allclose(resized.pixels[..., 3], np.clip(lanczos, 0, 1), atol=1e-6)
    grey = run_to_end(upscale_image(upscaler, ImageData(_image(12, 10, 1)), tile=0, scale=3))
    assert grey.pixels.shape == (36, 30, 1) and grey.to_pil().mode == "L"


def test_16_bit_inputs_stay_16_bit(files: dict, tmp_path: Path) -> None:
    upscaler = load_upscaler(str(files["compact"]))
    rgb16 = (np.random.default_rng(3).random((9, 11, 3)) * 65535).astype(np.uint16)
    with (tmp_path / "rgb16.png").open("wb") as handle:
        png.Writer(11, 9, greyscale=False, bitdepth=16).write(handle, rgb16.reshape(9, -1))
    image = read_image_data(tmp_path / "rgb16.png")
    assert image.bits == 16 and np.allclose(image.pixels * 65535, rgb16, atol=0.5)
    result = run_to_end(upscale_image(upscaler, image, tile=8))
    (tmp_path / "out.png").write_bytes(result.png_bytes({"k": "v"}))
    back = read_image_data(tmp_path / "out.png")
    assert back.bits == 16 and back.pixels.shape == (18, 22, 3)
    levels = np.round(back.pixels * 65535).astype(np.int64)
    assert np.any(levels % 257 != 0)  # not 8-bit values in disguise
    assert read_png_text(tmp_path / "out.png")["k"] == "v"
    grey16 = Image.fromarray((np.arange(99).reshape(9, 11) * 600).astype(np.uint16))
    grey16.save(tmp_path / "grey16.png")
    grey = run_to_end(upscale_image(upscaler, read_image_data(tmp_path / "grey16.png"), tile=0))
    assert grey.bits == 16 and grey.to_pil().mode in ("I;16", "I")


def test_denoise_strength_blends_general_and_wdn_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    general, wdn = compact_state(1, num_conv=2), compact_state(2, num_conv=2)
    for name, state in (("realesr_general_x4v3", general), ("realesr_general_wdn_x4v3", wdn)):
        path = save_upscaler(state, tmp_path / f"{name}.pth", "params")
        entry = WeightFile(name, path.name, ("https://example.invalid/x",), "upscaler")
        monkeypatch.setitem(store.REGISTRY, name, entry)
    upscaler = load_upscaler("realesr_general_x4v3", denoise=0.3, weights_dir=tmp_path)
    blended = upscaler.descriptor.model.state_dict()
    for key in general:
        torch.testing.assert_close(blended[key], 0.3 * general[key] + 0.7 * wdn[key])
    with pytest.raises(ConfigError, match="denoise strength works with realesr_general_x4v3 only"):
        load_upscaler(str(tmp_path / "realesr_general_x4v3.pth"), denoise=0.5)


def test_bad_files_get_one_sentence(files: dict, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(files["rrdb"].read_bytes()[:3000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_upscaler(str(truncated))
    from tests.factories import save_tiny_vqgan

    vqgan, _, _ = save_tiny_vqgan(tmp_path)
    with pytest.raises(CheckpointError, match="tiny_vqgan.ckpt is a VQGAN checkpoint, not an upscaler"):
        load_upscaler(str(vqgan))
    odd = save_upscaler({"weird.layer.weight": torch.zeros(3, 3)}, tmp_path / "odd.pth", None)
    with pytest.raises(CheckpointError, match="odd.pth is not an upscaler spandrel recognises"):
        load_upscaler(str(odd))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputError, match="notes.png is not an image this tool can read"):
        read_image_data(tmp_path / "notes.png")


def test_upscale_command_writes_beside_never_overwrites_and_reports_bad_files(files: dict, tmp_path: Path,
                                                                              capsys) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray((_image(10, 14) * 255).astype(np.uint8)).save(inputs / "a.png")
    Image.fromarray((_image(9, 7, 4) * 255).astype(np.uint8), mode="RGBA").save(inputs / "b.png")
    (inputs / "c.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    args = ["upscale", str(inputs), "--model", str(files["compact"]), "--tile", "32", "--out", str(tmp_path / "out")]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "c.jpg" in captured.err and "1 of 3 files could not be upscaled" in captured.err
    a = tmp_path / "out" / "a_x2.png"
    assert Image.open(a).size == (28, 20) and Image.open(tmp_path / "out" / "b_x2.png").mode == "RGBA"
    text = read_png_text(a)
    assert text[MODE_KEY] == "upscale" and json.loads(text[CONFIG_KEY])["source"].endswith("a.png")
    first = a.read_bytes()
    assert main(["upscale", str(inputs / "a.png"), "--model", str(files["compact"]), "--scale", "3",
                 "--out", str(tmp_path / "out")]) == 0
    assert main(["upscale", str(inputs / "a.png"), "--model", str(files["compact"]),
                 "--out", str(tmp_path / "out")]) == 0
    assert a.read_bytes() == first and (tmp_path / "out" / "a_x2-2.png").is_file()
    assert Image.open(tmp_path / "out" / "a_x3.png").size == (42, 30)
    assert main(["upscale", str(tmp_path / "missing.png"), "--model", str(files["compact"])]) == 1
    assert "missing.png does not exist" in capsys.readouterr().err


def test_generate_and_sample_save_upscaled_copies(files: dict, tiny_files, tmp_path: Path) -> None:
    from tests.prior_factories import save_tiny_prior

    assert main(["city", *tiny_files.cli_args(), "--size", "32", "32", "--cutn", "4", "--steps", "2", "--seed", "1",
                 "--upscale", "2", "--upscale-model", str(files["compact"]), "--out", str(tmp_path / "g")]) == 0
    (folder,) = (tmp_path / "g").iterdir()
    assert Image.open(folder / "final_x2.png").size == (64, 64)
    prior = save_tiny_prior(tmp_path / "prior", "sos")
    assert main(["sample", "--transformer", str(prior.checkpoint), "-n", "2", "--seed", "0", "--upscale", "3",
                 "--upscale-model", str(files["compact"]), "--out", str(tmp_path / "s")]) == 0
    (folder,) = (tmp_path / "s").iterdir()
    assert [Image.open(folder / f"sample-00{i}_x3.png").size for i in (0, 1)] == [(96, 96)] * 2
