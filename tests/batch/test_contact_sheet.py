"""The batch contact sheet (issue 26, point 6): every image scaled to one readable tile with
sharp pixels, its prompt and seed under it, and one page per 48 images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from generator.batch import index as index_module
from generator.batch.grid_image import MIN_TILE
from generator.batch.index import write_index
from generator.batch.records import JobRecord


def _record(folder: Path, number: int, colour: tuple[int, int, int], prompt: str) -> JobRecord:
    run = folder / f"run-{number}"
    run.mkdir(parents=True)
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:] = colour
    pixels[::2, ::2] = 255 - np.array(colour)  # a checker, which a blurry resize would smear
    Image.fromarray(pixels).save(run / "final.png")
    return JobRecord(id=f"{number}.0", source=f"prompts.txt line {number}", fingerprint=str(number), status="done",
                     prompt=prompt, seed=100 + number, config={}, error=None, folder=run.name, timings={})


def test_the_contact_sheet_scales_every_image_and_captions_it(tmp_path: Path) -> None:
    records = [_record(tmp_path, n, colour, prompt) for n, (colour, prompt) in enumerate(
        [((200, 30, 30), "a red lighthouse on a cliff at dusk, oil painting"), ((30, 200, 30), "a green forest"),
         ((30, 30, 200), "a blue sea")], 1)]
    sheet_path, _ = write_index(tmp_path, records)
    sheet = np.asarray(Image.open(sheet_path).convert("RGB"))
    tile = MIN_TILE  # 32 px images are enlarged 6x to 192
    assert sheet.shape[1] == 3 * tile + 2 * 4 and sheet.shape[0] > tile + 20  # three across, a caption below
    for column, record in enumerate(records):
        left = column * (tile + 4)
        enlarged = np.asarray(Image.open(tmp_path / record.folder / "final.png").resize((tile, tile),
                                                                                        Image.Resampling.NEAREST))
        assert np.array_equal(sheet[:tile, left:left + tile], enlarged)  # sharp pixels, not a 32 px stamp
        caption = sheet[tile:, left:left + tile]
        assert (caption < 128).any(axis=-1).sum() > 100  # text under each image
    # each caption is its own: the captions of two records differ
    assert not np.array_equal(sheet[tile:, :tile], sheet[tile:, tile + 4:2 * tile + 4])


def test_a_long_batch_gets_one_page_per_48_images(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(index_module, "PAGE", 2)
    records = [_record(tmp_path, n, (10 * n, 80, 120), f"prompt {n}") for n in range(1, 6)]
    first, _ = write_index(tmp_path, records)
    assert first == tmp_path / "index.png"
    pages = sorted(path.name for path in tmp_path.glob("index*.png"))
    assert pages == ["index-2.png", "index-3.png", "index.png"]
    assert Image.open(tmp_path / "index-3.png").width == MIN_TILE  # the last page holds one image
