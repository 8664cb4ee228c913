"""Seamless (tileable) upscaling: along the wrapped axes the network sees the image's other side
as context, so an upscaled seamless texture tiles without a seam; the size is unchanged and the
plain upscale is exactly what it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.cli.main import main
from generator.config import UpscaleConfig
from generator.errors import ConfigError
from generator.events import Progress
from generator.io.image_data import ImageData, read_image_data
from generator.io.outputs import CONFIG_KEY, read_png_text
from generator.upscale.loader import Upscaler, load_upscaler
from generator.upscale.tiles import run_to_end, tile_cores, upscale_image, upscale_pixels
from tests.seams import seam_statistic
from tests.upscale.helpers import events_of
from tests.upscale.helpers import image as _image

SEAMLESS_TOLERANCE = 1.1  # a seamless result's wrap seam: at most this times its interior difference
VISIBLE_SEAM = 1.5  # a plain result's wrap seam: at least this times its interior difference


def periodic_image(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """(H, W, C) float32 in [0.1, 0.9] that tiles perfectly: a random smooth field made of
    whole periods only (frequencies up to 4 along each axis), so its wrap seam is like any
    other pair of neighbouring columns or rows."""
    rng = np.random.default_rng(seed)
    spectrum = np.zeros((channels, height, width), dtype=complex)
    for ky in range(-4, 5):
        for kx in range(-4, 5):
            spectrum[:, ky % height, kx % width] = rng.normal(size=channels) + 1j * rng.normal(size=channels)
    field = np.fft.ifft2(spectrum).real  # (C, H, W), periodic in both axes
    field = (field - field.min()) / (field.max() - field.min())
    return (0.1 + 0.8 * field).transpose(1, 2, 0).astype(np.float32)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]  # (1, C, H, W)


def _array(pixels: torch.Tensor) -> np.ndarray:
    return pixels[0].permute(1, 2, 0).numpy()  # (H, W, C)


def _copies(seamless: str, axis: str, side: int, pad: int) -> int:
    """Copies of the image along ``axis`` that surround the middle one with ``pad`` pixels of it."""
    return 2 * -(-pad // side) + 1 if axis in seamless else 1


def middle_of_tiled(upscaler: Upscaler, array: np.ndarray, seamless: str, **options) -> np.ndarray:
    """The plain, untiled upscale of ``array`` repeated along the wrapped axes, cut back to the
    middle copy: what a seamless upscale must give where its context covers the receptive field."""
    height, width = array.shape[:2]
    rows, columns = (_copies(seamless, axis, side, upscaler.tile_pad) for axis, side in (("y", height), ("x", width)))
    tiled = np.tile(array, (rows, columns, 1))
    out = _array(run_to_end(upscale_pixels(upscaler, _tensor(tiled), tile=0, precision="fp32", **options)))
    top, left = rows // 2 * height * upscaler.scale, columns // 2 * width * upscaler.scale
    return out[top:top + height * upscaler.scale, left:left + width * upscaler.scale]


def plain_reference(upscaler: Upscaler, pixels: torch.Tensor, tile: int) -> torch.Tensor:
    """The float32 tiler as it was before seamless upscaling: each core run with its context
    clamped at the image border, only the core's output kept."""
    _, _, height, width = pixels.shape
    scale, pad = upscaler.scale, upscaler.tile_pad
    out = torch.empty(1, 3, height * scale, width * scale)
    for y, x, h, w in tile_cores(height, width, tile):
        y0, x0, y1, x1 = max(y - pad, 0), max(x - pad, 0), min(y + h + pad, height), min(x + w + pad, width)
        with torch.inference_mode():
            output = upscaler.unclamped(pixels[:, :, y0:y1, x0:x1].contiguous(memory_format=torch.channels_last))
        oy, ox = (y - y0) * scale, (x - x0) * scale
        out[:, :, y * scale:(y + h) * scale, x * scale:(x + w) * scale] = \
            output[:, :, oy:oy + h * scale, ox:ox + w * scale].clamp(0, 1)
    return out


ROUNDING = 1e-5
"""Exact but for float rounding: a CPU's convolution kernels may add up in another order for an
input of another size (seen on AMD EPYC); a missing pixel of context is ~1e-2 off."""


@pytest.mark.parametrize(("name", "size", "tile", "seamless"), [
    ("compact", (24, 32), 0, "xy"), ("compact", (37, 53), 16, "x"), ("compact16", (29, 21), 20, "y"),
    ("compact", (4, 6), 0, "xy"), ("compact", (13, 9), 8, "xy"),  # images narrower than their context
    ("rrdb", (24, 32), 16, "xy"), ("rrdb_x2", (20, 18), 0, "x")])
def test_seamless_upscale_is_the_middle_of_the_image_tiled(files: dict, name: str, size: tuple[int, int], tile: int,
                                                           seamless: str) -> None:
    upscaler = load_upscaler(str(files[name]))
    array = _image(*size, seed=4)
    events, result = events_of(upscale_pixels(upscaler, _tensor(array), tile=tile, precision="fp32",
                                              seamless=seamless))
    assert result.shape == (1, 3, size[0] * upscaler.scale, size[1] * upscaler.scale)
    expected = middle_of_tiled(upscaler, array, seamless)
    if name.startswith("compact"):  # the context covers the receptive field: the same up to float rounding
        assert np.abs(_array(result) - expected).max() <= ROUNDING
    else:  # the x2 RRDBNet sees further than its 24 px context (it runs at half size): within a grey level
        assert np.abs(_array(result) - expected).max() <= 1 / 255
    rounded = -(-tile // upscaler.multiple_of) * upscaler.multiple_of
    tiles = len(tile_cores(*size, rounded if rounded < max(size) else 0))
    assert [e.step for e in events if isinstance(e, Progress)] == list(range(1, tiles + 1))  # no extra tiles


@pytest.mark.parametrize("tile", [0, 16])
def test_a_periodic_image_stays_seamless_where_the_plain_upscale_shows_a_seam(files: dict, tile: int) -> None:
    """The seam statistic of one seam depends on the texture where it falls (a steep or a flat
    part), so it is pooled over 8 places of the wrap seam in the texture (the image rolled)."""
    upscaler = load_upscaler(str(files["rrdb"]))
    array = periodic_image(24, 32)

    def ratios(seamless: str) -> dict[str, float]:
        """seam / interior along x and y, pooled over the 8 rolls."""
        pooled = {"x": np.zeros(2), "y": np.zeros(2)}
        for k in range(8):
            rolled = np.roll(array, (3 * k, 4 * k), axis=(0, 1))
            events, result = events_of(upscale_pixels(upscaler, _tensor(rolled), tile=tile, precision="fp32",
                                                      seamless=seamless))
            assert sum(isinstance(e, Progress) for e in events) == (4 if tile else 1)  # 2 x 2 tiles, or the whole
            assert result.shape == (1, 3, 96, 128)
            for axis in pooled:
                pooled[axis] += seam_statistic(_array(result), axis)
        return {axis: seam / interior for axis, (seam, interior) in pooled.items()}

    plain = ratios("")
    assert min(plain.values()) >= VISIBLE_SEAM  # zero padding at both edges: a seam
    assert max(ratios("xy").values()) <= SEAMLESS_TOLERANCE
    across, down = ratios("x"), ratios("y")  # only the axis asked for wraps around
    assert across["x"] <= SEAMLESS_TOLERANCE and across["y"] >= VISIBLE_SEAM
    assert down["y"] <= SEAMLESS_TOLERANCE and down["x"] >= VISIBLE_SEAM


def test_seam_statistic_reads_images_and_arrays_alike() -> None:
    ramp = np.tile(np.arange(8, dtype=np.float64)[None, :, None] / 8, (4, 1, 3))  # (4, 8, 3): +1/8 a column
    assert seam_statistic(ramp, "x") == pytest.approx((7 / 8, 1 / 8))  # the wrap falls from 7/8 to 0
    assert seam_statistic(ramp, "y") == (0.0, 0.0)
    # pooled over pixels: the x seam's 4 rows with the y seam's 8 columns, 7 x 4 pairs inside with 3 x 8
    assert seam_statistic(ramp, "xy") == pytest.approx((7 / 8 * 4 / (4 + 8), 1 / 8 * 7 * 4 / (7 * 4 + 3 * 8)))
    image = Image.fromarray(np.round(ramp * 255).astype(np.uint8))
    assert seam_statistic(image, "x") == pytest.approx(seam_statistic(np.round(ramp * 255) / 255, "x"))
    assert seam_statistic(ramp[..., 0], ("x",)) == pytest.approx((7 / 8, 1 / 8))
    with pytest.raises(ValueError, match="axes must be x, y or xy, not 'z'"):
        seam_statistic(ramp, "z")


@pytest.mark.parametrize("tile", [0, 16])
@pytest.mark.parametrize("name", ["compact", "rrdb"])
def test_plain_upscale_is_unchanged(files: dict, name: str, tile: int) -> None:
    upscaler = load_upscaler(str(files[name]))
    pixels = _tensor(_image(45, 53, seed=6))  # interior tiles: context on all four sides
    before = plain_reference(upscaler, pixels, tile)
    assert torch.equal(run_to_end(upscale_pixels(upscaler, pixels, tile=tile, precision="fp32")), before)
    assert torch.equal(run_to_end(upscale_pixels(upscaler, pixels, tile=tile, precision="fp32", seamless="")), before)
    assert not torch.equal(run_to_end(upscale_pixels(upscaler, pixels, tile=tile, precision="fp32", seamless="x")),
                           before)


@pytest.mark.parametrize("alpha", ["network", "resize"])
@pytest.mark.parametrize("tile", [0, 8])
def test_alpha_and_the_output_resize_wrap_around_too(files: dict, alpha: str, tile: int) -> None:
    upscaler = load_upscaler(str(files["compact"]))
    rgba = _image(12, 10, 4, seed=7)  # a hard-edged alpha, cut off at the right-hand edge
    rgba[..., 3] = (np.arange(10) < 7).astype(np.float32)[None, :]
    seamless = run_to_end(upscale_image(upscaler, ImageData(rgba), tile=tile, precision="fp32", scale=3,
                                        alpha=alpha, seamless="xy"))
    plain = run_to_end(upscale_image(upscaler, ImageData(rgba), tile=tile, precision="fp32", scale=3, alpha=alpha))
    assert seamless.pixels.shape == plain.pixels.shape == (36, 30, 4)
    tiled = run_to_end(upscale_image(upscaler, ImageData(np.tile(rgba, (3, 3, 1))), tile=0, precision="fp32",
                                     scale=3, alpha=alpha)).pixels
    middle = tiled[36:72, 30:60]  # what the image tiled 3 x 3 gives in its middle copy, resizes included
    assert np.abs(seamless.pixels - middle).max() <= 1e-5
    assert np.abs(plain.pixels - middle).max() > 0.05  # where the plain upscale differs
    grey = run_to_end(upscale_image(upscaler, ImageData(_image(12, 10, 1)), tile=tile, scale=1.5, seamless="y"))
    assert grey.pixels.shape == (18, 15, 1) and grey.to_pil().mode == "L"


def test_seamless_flag_of_the_upscale_command_and_of_the_generate_command(files: dict, tmp_path: Path,
                                                                          capsys) -> None:
    upscaler = load_upscaler(str(files["compact"]))
    source = tmp_path / "texture.png"
    Image.fromarray(np.round(periodic_image(20, 28) * 255).astype(np.uint8)).save(source)
    common = [str(source), "--model", str(files["compact"]), "--tile", "32", "--out", str(tmp_path / "out")]
    assert main(["upscale", *common, "--seamless", "xy"]) == 0
    written = tmp_path / "out" / "texture_x2.png"
    expected = run_to_end(upscale_image(upscaler, read_image_data(source), tile=32, seamless="xy"))
    assert np.array_equal(np.asarray(Image.open(written)), np.asarray(expected.to_pil()))
    assert json.loads(read_png_text(written)[CONFIG_KEY])["upscale"]["upscale_seamless"] == "xy"
    capsys.readouterr()
    assert main(["upscale", *common, "--seamless", "z"]) == 1
    assert capsys.readouterr().err == \
        "error: --seamless must be x, y or xy (the axes the image wraps around), not 'z'.\n"
    assert not (tmp_path / "out" / "texture_x2-2.png").exists()

    from generator.text_to_image.cli import build_parser, config_from_args

    parser = build_parser("generator")
    config = config_from_args(parser.parse_args(["city", "--upscale", "4", "--upscale-seamless", "xy"]))
    assert config.upscale == UpscaleConfig(upscale=4.0, upscale_seamless="xy")
    assert config_from_args(parser.parse_args(["city"])).upscale.upscale_seamless == ""
    with pytest.raises(ConfigError, match=r"^upscale_seamless must be x, y, xy or empty \(off\), not 'z'\.$"):
        config_from_args(parser.parse_args(["city", "--upscale-seamless", "z"]))


def test_the_upscale_tab_passes_seamless_into_its_job(files: dict, tmp_path: Path) -> None:
    from generator.upscale.tab import SEAMLESS_CHOICES, upscale_config
    from generator.webui.jobs import upscale_job
    from generator.webui.studio import Studio

    form = {"upscale": 0, "upscale_tile": 0, "upscale_denoise": -1, "upscale_alpha": "network"}
    configs = {choice: upscale_config({**form, "upscale_seamless": choice}, str(files["compact"]))
               for choice in SEAMLESS_CHOICES}
    assert {choice: config.upscale_seamless for choice, config in configs.items()} == \
        {"off": "", "x": "x", "y": "y", "xy": "xy"}
    source = tmp_path / "texture.png"
    Image.fromarray(np.round(periodic_image(16, 24) * 255).astype(np.uint8)).save(source)
    studio = Studio(outputs_dir=tmp_path / "outputs", device="cpu")
    results = {}
    for choice in ("off", "xy"):
        final = list(upscale_job(studio, str(source), configs[choice], studio.session()))[-1]
        results[choice] = np.asarray(Image.open(final.result))
        assert json.loads(read_png_text(Path(final.result))[CONFIG_KEY])["upscale"]["upscale_seamless"] == \
            configs[choice].upscale_seamless
    upscaler = load_upscaler(str(files["compact"]))
    expected = run_to_end(upscale_image(upscaler, read_image_data(source), tile=0, seamless="xy"))
    assert np.array_equal(results["xy"], np.asarray(expected.to_pil()))
    assert results["xy"].shape == results["off"].shape == (32, 48, 3)
    assert not np.array_equal(results["xy"], results["off"])
