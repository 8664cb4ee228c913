"""Editing on the tiny official-format models: masks, region prompts, outpainting and seamless
tiles, through the pipeline and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from generator.cli.main import main
from generator.config import GenerationConfig
from generator.decoder.tiling import wrap_around
from generator.errors import InputError
from generator.io.images import pil_to_tensor
from generator.text_to_image import edit as edit_module
from generator.text_to_image.edit import edit_canvas
from generator.text_to_image.latents import encode_pixels
from generator.text_to_image.loop import synthesize
from generator.text_to_image.pipeline import TextToImage
from tests.factories import tiny_run_config
from tests.seams import seam_statistic


class RednessClip:
    """A stand-in CLIP whose score is known: an image's embedding is its mean colour, "red" is
    pure red and "blue" pure blue, so a prompt pulls the cutouts it scores toward that colour."""

    name, input_size, embed_dim = "redness/stand-in", 8, 3
    device, dtype = torch.device("cpu"), torch.float32

    def to(self, device: object) -> RednessClip:
        return self

    def to_dtype(self, dtype: torch.dtype) -> RednessClip:
        return self

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        table = {"red": [1.0, 0.0, 0.0], "blue": [0.0, 0.0, 1.0]}
        return F.normalize(torch.tensor([table[text] for text in texts]), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(images.mean(dim=(2, 3)) + 1e-3, dim=-1)


def _save(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def photo(tmp_path: Path) -> tuple[Path, np.ndarray]:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return _save(pixels, tmp_path / "photo.png"), pixels


@pytest.fixture
def left_mask(tmp_path: Path) -> Path:
    mask = np.zeros((32, 32), np.uint8)
    mask[:, :16] = 255
    return _save(mask, tmp_path / "left.png")


def _edit_config(files, image: Path, steps: int = 4, **edit) -> GenerationConfig:
    return tiny_run_config(files, size=None, steps=steps, init={"init": "image", "init_image": str(image)}, edit=edit)


def test_pixels_outside_a_hard_mask_are_the_input_exactly_and_inside_they_change(tiny_files, tiny_pipeline, photo,
                                                                                  left_mask) -> None:
    image, pixels = photo
    done = tiny_pipeline(_edit_config(tiny_files, image, mask=str(left_mask), mask_blur=0))
    out = np.asarray(done.images[0])
    assert out.shape == pixels.shape  # the image's own size (no --size)
    assert np.array_equal(out[:, 16:], pixels[:, 16:])
    assert np.abs(out[:, :16].astype(int) - pixels[:, :16]).mean() > 20
    assert done.config["size"] == [32, 32] and done.config["edit"]["mask"] == str(left_mask)


def test_only_the_latent_cells_under_the_mask_are_optimised(tiny_files, tiny_pipeline, photo, left_mask) -> None:
    """The cells of the kept half stay the image's own latent: the loop never moves them."""
    image, _ = photo
    config = _edit_config(tiny_files, image, steps=3, mask=str(left_mask), mask_blur=0)
    run = tiny_pipeline.run(config)
    list(run)
    latent = run.state.latent()[0]  # (C, h, w); the tiny VQGAN has factor 2: 16 x 16 cells
    start = encode_pixels(tiny_pipeline.vqgan, pil_to_tensor(Image.open(image)))[0]
    assert torch.equal(latent[:, :, 9:], start[:, :, 9:])  # cells 8.. touch the mask; 8 is the dilation
    assert not torch.equal(latent[:, :, :8], start[:, :, :8])


def test_a_feathered_edge_rises_monotonically_and_is_exact_far_from_it(tiny_files, tiny_pipeline, photo,
                                                                       left_mask) -> None:
    image, pixels = photo
    config = _edit_config(tiny_files, image, mask=str(left_mask), mask_blur=2)
    canvas = edit_canvas(config, 2)
    row = canvas.mask[5]  # change on the left, keep on the right
    assert torch.all(row[1:] <= row[:-1] + 1e-6) and 0 < float(row[16]) < 1 and 0 < float(row[15]) < 1
    assert float(row[0]) == pytest.approx(1) and float(row[-1]) == 0
    out = np.asarray(tiny_pipeline(config).images[0])
    assert np.array_equal(out[:, 23:], pixels[:, 23:])  # beyond 3 sigma of the edge: the input itself
    assert not np.array_equal(out[:, 14:18], pixels[:, 14:18])


def test_a_mask_from_the_images_transparency(tiny_files, tiny_pipeline, tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:, :12, 3] = 0  # erased: to be repainted
    image = _save(rgba, tmp_path / "erased.png")
    out = np.asarray(tiny_pipeline(_edit_config(tiny_files, image, mask="alpha", mask_blur=0)).images[0])
    assert np.array_equal(out[:, 12:], rgba[:, 12:, :3])


def test_a_region_prompt_changes_its_region_more_than_the_rest(tiny_files, tiny_pipeline, tmp_path: Path,
                                                                left_mask) -> None:
    """With a stand-in CLIP that scores redness, "red @ left" reddens the left half and not the
    right; the same prompt without a region reddens both halves alike."""
    vqgan = tiny_pipeline.vqgan
    pipeline = TextToImage(vqgan, [RednessClip()])
    grey = _save(np.full((32, 32, 3), 128, np.uint8), tmp_path / "grey.png")
    start = synthesize(vqgan, encode_pixels(vqgan, pil_to_tensor(Image.open(grey))))[0]

    def redness_gain(prompt: str) -> tuple[float, float]:
        config = tiny_run_config(tiny_files, prompts=prompt, steps=25, init={"init": "image", "init_image": str(grey)},
                                 optim={"lr": 0.2, "init_weight": 0.0}, cutouts={"cutn": 16, "augments": []})
        final = pil_to_tensor(pipeline(config).images[0])[0]
        gain = (final[0] - final[1:].mean(0)) - (start[0] - start[1:].mean(0))  # (H, W)
        return float(gain[:, :16].mean()), float(gain[:, 16:].mean())

    left, right = redness_gain(f"red @ {left_mask}")
    plain_left, plain_right = redness_gain("red")
    assert left - right > 0.07
    assert left - right > 2 * abs(plain_left - plain_right)


def test_negative_and_weighted_prompts_work_inside_regions(tiny_files, tmp_path: Path, tiny_pipeline,
                                                           left_mask) -> None:
    pipeline = TextToImage(tiny_pipeline.vqgan, [RednessClip()])
    grey = _save(np.full((32, 32, 3), 128, np.uint8), tmp_path / "grey.png")
    config = tiny_run_config(tiny_files, prompts=f"red:2 @ {left_mask} | blue:-1 @ {left_mask}", steps=2,
                             init={"init": "image", "init_image": str(grey)})
    done = pipeline(config)
    assert set(done.config) >= {"prompts"} and "@" in done.config["prompts"]


def test_outpainting_keeps_the_image_and_continues_its_edges(tiny_files, tiny_pipeline, tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([xx * 6, yy * 6, (xx + yy) * 3], axis=-1).astype(np.uint8)  # a smooth image
    image = _save(smooth, tmp_path / "smooth.png")
    config = _edit_config(tiny_files, image, steps=4, outpaint=(8, 0, 9, 3), mask_blur=3)
    done = tiny_pipeline(config)
    out = np.asarray(done.images[0]).astype(int)
    assert out.shape == (35, 49, 3)  # 32 + 3 high, 32 + 8 + 9 wide (made at 50 x 36 and cropped)
    assert np.array_equal(out[:32, 8:40], smooth)  # the original block, exactly
    border = np.concatenate([out[:, :8].reshape(-1, 3), out[:, 40:].reshape(-1, 3), out[32:].reshape(-1, 3)])
    assert border.std(axis=0).min() > 3  # not a flat fill
    # the border continues the edges: the step across the image's edge is small
    assert np.abs(out[:32, 7] - out[:32, 8]).mean() < 40 and np.abs(out[:32, 40] - out[:32, 39]).mean() < 40
    assert done.config["size"] == [32, 32] and done.config["edit"]["outpaint"] == [8, 0, 9, 3]


def test_the_outpaint_border_starts_from_the_image_not_grey(tmp_path: Path) -> None:
    pixels = torch.zeros(1, 3, 8, 8)
    pixels[:, 0] = 1.0  # red
    grown = edit_module.extend(pixels, (5, 20, 0, 3))  # wider than the image: mirrored again and again
    assert grown.shape == (1, 3, 11, 33)
    assert torch.equal(grown[:, :, :8, 5:13], pixels)
    assert float(grown[:, 0].min()) > 0.99 and float(grown[:, 1:].max()) < 0.01  # red everywhere, no grey


def test_an_outpaint_beyond_the_free_memory_is_one_sentence(tiny_files, tiny_pipeline, photo, monkeypatch) -> None:
    image, _ = photo
    monkeypatch.setattr(edit_module, "available_bytes", lambda device: 2_000_000_000)
    with pytest.raises(InputError, match=r"this outpaint makes a 1056x1056 canvas, which needs about 4\.7 GB"):
        list(tiny_pipeline.run(_edit_config(tiny_files, image, outpaint=(512, 512, 512, 512))))


def test_a_seamless_tile_has_no_seam(tiny_files, tiny_pipeline) -> None:
    config = tiny_run_config(tiny_files, size=[32, 32], steps=3)
    plain = tiny_pipeline(config).images[0]
    tile = tiny_pipeline(config.replace(edit=config.edit.__class__(seamless="xy"))).images[0]
    seam, interior = seam_statistic(tile, "xy")
    assert seam <= 1.05 * interior
    assert not np.array_equal(np.asarray(plain), np.asarray(tile))
    grid = np.tile(np.asarray(tile), (2, 2, 1)).astype(float) / 255  # a 2x2 grid of the tile
    middle = (np.abs(grid[:, 32] - grid[:, 31]).mean() + np.abs(grid[32] - grid[31]).mean()) / 2
    assert middle <= 1.05 * interior  # its middle seams look like any two neighbouring columns and rows


def test_a_wrapped_decoder_decodes_a_rolled_latent_to_the_rolled_image(tiny_pipeline) -> None:
    """What makes a tile seamless: with circular padding the decoder has no edges, so moving the
    latent by whole cells moves the image by as many pixels, across the wrap seam and back."""
    vqgan = tiny_pipeline.vqgan
    factor = vqgan.downsample_factor
    latent = torch.randn(1, vqgan.code_dim, 8, 8, generator=torch.Generator().manual_seed(0))

    def shifted(axes: str, cells: tuple[int, int]) -> bool:
        with torch.no_grad(), wrap_around(vqgan, axes):
            image = vqgan.decode(latent)
            moved = vqgan.decode(torch.roll(latent, cells, dims=(2, 3)))
        expected = torch.roll(image, (cells[0] * factor, cells[1] * factor), dims=(2, 3))
        return torch.allclose(moved, expected, atol=1e-5)

    assert shifted("xy", (3, 5)) and shifted("x", (0, 5)) and shifted("y", (3, 0))
    assert not shifted("", (0, 5)) and not shifted("x", (3, 0))


def test_cutouts_of_a_seamless_tile_run_over_its_edges() -> None:
    from generator.text_to_image.cutouts import MakeCutouts

    image = torch.rand(1, 3, 32, 32)
    cutter = MakeCutouts(8, 64, wrap="x")
    sizes, ys, xs = cutter.geometry(32, 32, torch.Generator().manual_seed(0))
    assert bool(((xs + sizes) > 32).any()) and not bool(((ys + sizes) > 32).any())
    masks = torch.zeros(1, 32, 32)
    masks[0, :, :2] = 1  # the first two columns: only a crop over the right edge covers them from the right
    _, coverage = cutter.cut(image, torch.Generator().manual_seed(0), masks)
    over = (xs + sizes) > 32
    assert bool((coverage[over, 0] > 0).all())


def test_the_seamless_decoder_is_restored_after_the_run(tiny_files, tiny_pipeline) -> None:
    config = tiny_run_config(tiny_files, size=[32, 32], steps=1)
    before = tiny_pipeline(config).images[0]
    tiny_pipeline(config.replace(edit=config.edit.__class__(seamless="x")))
    assert np.array_equal(np.asarray(tiny_pipeline(config).images[0]), np.asarray(before))


def _cli(tiny_files, out: Path, *args: str) -> list[str]:
    return [*args, "--steps", "2", "--cutn", "4", "--precision", "fp32", "--seed", "1", *tiny_files.cli_args(),
            "--out", str(out), "--device", "cpu"]


def test_the_command_line_does_each_edit(tiny_files, photo, left_mask, tmp_path: Path, capsys) -> None:
    image, pixels = photo
    out = tmp_path / "out"
    runs = {
        "mask": ["a cat", "--init-image", str(image), "--mask", str(left_mask), "--mask-blur", "0"],
        "region": [f"a cat @ {left_mask} | a dog", "--size", "32", "32"],
        "outpaint": ["a cat", "--init-image", str(image), "--outpaint", "left=4,bottom=6"],
        "seamless": ["a cat", "--size", "32", "32", "--seamless", "xy"],
    }
    finals = {}
    for name, args in runs.items():
        assert main(_cli(tiny_files, out, *args)) == 0, name
        finals[name] = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.array_equal(np.asarray(Image.open(finals["mask"]))[:, 16:], pixels[:, 16:])
    assert Image.open(finals["outpaint"]).size == (36, 38)
    recorded = json.loads((finals["seamless"].parent / "config.json").read_text())
    assert recorded["edit"]["seamless"] == "xy"
    assert json.loads((finals["outpaint"].parent / "config.json").read_text())["edit"]["outpaint"] == [4, 0, 0, 6]


@pytest.mark.parametrize(("args", "sentence"), [
    (["--mask", "{black}"], "is black everywhere, so nothing would change"),
    (["--mask", "{white}"], "is white everywhere, so nothing of the image would be kept"),
    (["--mask", "{missing}"], "does not exist"),
    (["--mask", "alpha"], "has no transparency to take the mask from"),
    (["--outpaint", "left=4,middle=3"], "is not a side"),
])
def test_bad_edit_inputs_are_one_sentence(tiny_files, photo, tmp_path: Path, capsys, args, sentence) -> None:
    image, _ = photo
    masks = {"black": _save(np.zeros((32, 32), np.uint8), tmp_path / "black.png"),
             "white": _save(np.full((32, 32), 255, np.uint8), tmp_path / "white.png"),
             "missing": tmp_path / "nowhere.png"}
    args = [arg.format(**masks) for arg in args]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) if args[0] == "--outpaint" else _no_raise():
        code = main(_cli(tiny_files, out, "a cat", "--init-image", str(image), *args))
        assert code != 0
    err = capsys.readouterr().err
    assert sentence in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_a_mask_without_an_image_and_a_mask_of_another_size(tiny_files, tiny_pipeline, photo, tmp_path: Path,
                                                            capsys) -> None:
    image, pixels = photo
    small = np.zeros((8, 8), np.uint8)
    small[:, :4] = 255
    mask = _save(small, tmp_path / "small.png")
    assert main(_cli(tiny_files, tmp_path / "out", "a cat", "--mask", str(mask))) != 0
    assert "a mask or an outpaint edits an image; give the image with --init-image PATH." in capsys.readouterr().err
    events = list(tiny_pipeline.run(_edit_config(tiny_files, image, mask=str(mask), mask_blur=0)))
    notes = [event.message for event in events if type(event).__name__ == "Notice"]
    assert any("small.png is 8x8 and the image 32x32; the mask was stretched to fit." in note for note in notes)
    out = np.asarray(events[-1].images[0])
    assert np.array_equal(out[:, 20:], pixels[:, 20:])


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_an_edit_keeps_its_inputs_and_repeats_from_its_png_after_they_are_gone(tiny_files, tmp_path: Path,
                                                                                capsys) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    pixels = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image = _save(pixels, inputs / "photo.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[:, :16] = 255
    left = _save(mask, inputs / "left.png")
    top = _save(mask.T.copy(), inputs / "top | sky.png")  # a name the prompt grammar must escape
    prompt = f"a cat @ {left} | a bird:0.5 @ {str(top).replace('|', chr(92) + '|')}"
    out = tmp_path / "out"
    assert main(_cli(tiny_files, out, prompt, "--init-image", str(image), "--mask", str(left))) == 0
    first = Path(capsys.readouterr().out.strip().splitlines()[-1])
    folder = first.parent
    assert {"edit-image.png", "edit-mask.png", "region-1.png", "region-2.png"} <= {p.name for p in folder.iterdir()}
    recorded = json.loads((folder / "config.json").read_text())
    assert recorded["edit"]["mask"] == "edit-mask.png" and recorded["init"]["init_image"] == "edit-image.png"
    assert "@ region-1.png" in recorded["prompts"] and "@ region-2.png" in recorded["prompts"]
    assert np.array_equal(np.asarray(Image.open(folder / "region-2.png")), mask.T)
    for path in (image, left, top):
        path.unlink()
    assert main(_cli(tiny_files, out, "--from", str(first))) == 0
    again = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert again.parent != folder
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(first)))
    from generator.webui.gallery import list_runs

    listed = {run.folder: run for run in list_runs(out)}
    assert listed[folder].config["edit"]["mask"] == str(folder / "edit-mask.png")


def test_the_edit_command_records_an_edit_that_it_repeats(tiny_files, photo, left_mask, tmp_path: Path,
                                                          capsys) -> None:
    image, pixels = photo
    out = tmp_path / "out"
    assert main(_cli(tiny_files, out, "edit", str(image), "a cat", "--mask", str(left_mask), "--mask-blur", "0")) == 0
    final = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((final.parent / "run.json").read_text())["mode"] == "edit"
    assert np.array_equal(np.asarray(Image.open(final))[:, 16:], pixels[:, 16:])
    assert main(_cli(tiny_files, out, "--from", str(final))) != 0  # the text-to-image command points to edit
    assert f"repeat it with `python -m generator edit --from {final}`" in capsys.readouterr().err
    assert main(_cli(tiny_files, out, "edit", "--from", str(final))) == 0
    again = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(final)))
    assert main(_cli(tiny_files, out, "edit", str(image), "a cat")) != 0
    assert "an edit needs a mask (--mask FILE, or alpha" in capsys.readouterr().err
