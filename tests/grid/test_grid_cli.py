"""``python -m generator grid``: a 3x2 grid on the tiny models, its labelled grid.png and grid.json,
prompt search and replace, failed cells, reruns, and axes refused before anything loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from generator.batch.grid_image import GAP, MIN_TILE
from generator.cli.main import main
from generator.errors import GeneratorError
from generator.io.outputs import CONFIG_KEY, read_png_text

FAST = ["--size", "32", "32", "--cutn", "2", "--steps", "2", "--precision", "fp32"]


def grid_args(tiny_files, out: Path, *extra: str, prompt: str = "city at night") -> list[str]:
    """``grid PROMPT`` with the tiny models and fast settings."""
    return ["grid", prompt, *tiny_files.cli_args(), *FAST, "--out", str(out), *extra]


class Counting:
    """The tiny pipeline, counting its loads and runs; a run of a seed in ``fail_seeds`` fails."""

    def __init__(self, pipeline, fail_seeds: tuple[int, ...] = ()):
        self.pipeline, self.fail_seeds, self.runs, self.loads = pipeline, fail_seeds, [], 0

    def make(self, models, **options):
        self.loads += 1
        return self

    def run(self, config):
        self.runs.append(config)
        if config.seed in self.fail_seeds:
            raise GeneratorError(f"seed {config.seed} is cursed; pick another.")
        return self.pipeline.run(config)

    def __getattr__(self, name):
        return getattr(self.pipeline, name)


def rgb(image: Image.Image | Path) -> np.ndarray:
    if isinstance(image, Path):
        image = Image.open(image)
    return np.asarray(image.convert("RGB")).astype(np.int16)


def described(out: Path) -> dict[str, Any]:
    return json.loads((out / "grid.json").read_text())


def ink(region: np.ndarray) -> int:
    """Pixels of a white region that are dark (text)."""
    return int((region.max(axis=2) < 128).sum())


def test_a_3x2_grid_makes_six_cells_and_a_labelled_grid_image(tiny_files, tiny_pipeline, tmp_path: Path,
                                                               capsys) -> None:
    out = tmp_path / "grid"
    counting = Counting(tiny_pipeline)
    assert main(grid_args(tiny_files, out, "--x", "seed=1,2,3", "--y", "cutn=2,3"), make_pipeline=counting.make) == 0
    assert counting.loads == 1 and len(counting.runs) == 6
    assert capsys.readouterr().out.strip() == str(out / "grid.png")
    plan = described(out)
    assert plan["axes"]["x"]["labels"] == ["seed=1", "seed=2", "seed=3"]
    assert plan["axes"]["y"]["labels"] == ["cutn=2", "cutn=3"] and plan["axes"]["y"]["values"] == [2, 3]
    cells = plan["cells"]
    assert len(cells) == 6 and all(cell["status"] == "done" for cell in cells)
    folders = {cell["folder"] for cell in cells}
    assert len(folders) == 6 and all((out / folder / "final.png").is_file() for folder in folders)
    for cell in cells:  # each cell's run is the combination it stands for
        embedded = json.loads(read_png_text(out / cell["folder"] / "final.png")[CONFIG_KEY])
        assert (embedded["seed"], embedded["cutouts"]["cutn"]) == ((1, 2, 3)[cell["x"]], (2, 3)[cell["y"]])
        assert cell["labels"] == [f"seed={embedded['seed']}", f"cutn={embedded['cutouts']['cutn']}"]

    layout = plan["layout"]
    tile = 32 * -(-MIN_TILE // 32)  # 32 px images enlarged by a whole factor to at least MIN_TILE
    assert layout["tile"] == [tile, tile] and layout["left"] > 0 and layout["top"] > 0
    picture = rgb(out / "grid.png")
    assert picture.shape[:2] == (layout["top"] + 2 * tile + GAP, layout["left"] + 3 * tile + 2 * GAP)
    factor = tile // 32
    for cell in cells:
        left, upper, right, lower = cell["box"]
        assert (right - left, lower - upper) == (tile, tile)
        final = rgb(out / cell["folder"] / "final.png")
        assert np.array_equal(picture[upper:lower, left:right], final.repeat(factor, 0).repeat(factor, 1))
    header = [picture[:layout["top"] - GAP, box[0]:box[2]] for box in (c["box"] for c in cells if c["y"] == 0)]
    column = [picture[box[1]:box[3], :layout["left"] - GAP] for box in (c["box"] for c in cells if c["x"] == 0)]
    assert all(ink(label) > 20 for label in header + column)  # a label over every column, left of every row
    assert not np.array_equal(header[0], header[1]) and not np.array_equal(column[0], column[1])
    assert (out / "batch.jsonl").is_file() and (out / "index.html").is_file()


def test_search_and_replace_edits_each_cells_prompt(tiny_files, tiny_pipeline, tmp_path: Path) -> None:
    out = tmp_path / "grid"
    code = main(grid_args(tiny_files, out, "--seed", "4", "--x", 'sr=night,"dawn, misty",noon'),
                make_pipeline=lambda *a, **k: tiny_pipeline)
    assert code == 0
    plan = described(out)
    prompts = ["city at night", "city at dawn, misty", "city at noon"]
    assert [cell["prompt"] for cell in plan["cells"]] == prompts
    assert plan["axes"]["x"]["labels"] == ["night", "dawn, misty", "noon"] and plan["axes"]["x"]["field"] == "sr"
    for cell, prompt in zip(plan["cells"], prompts, strict=True):
        embedded = json.loads(read_png_text(out / cell["folder"] / "final.png")[CONFIG_KEY])
        assert embedded["prompts"] == prompt and embedded["seed"] == 4
    layout = plan["layout"]  # one axis: no label column
    assert layout["left"] == 0 and rgb(out / "grid.png").shape[:2] == (layout["top"] + layout["tile"][1],
                                                                       3 * layout["tile"][0] + 2 * GAP)


def test_a_failed_cell_is_a_grey_tile_and_a_rerun_makes_only_what_is_missing(tiny_files, tiny_pipeline,
                                                                              tmp_path: Path, capsys) -> None:
    out = tmp_path / "grid"
    args = grid_args(tiny_files, out, "--x", "seed=1,2", "--y", "steps=1,2")
    first = Counting(tiny_pipeline, fail_seeds=(2,))
    assert main(args, make_pipeline=first.make) == 1
    assert "seed 2 is cursed" in capsys.readouterr().err
    cells = {(c["x"], c["y"]): c for c in described(out)["cells"]}
    assert [cells[x, y]["status"] for y in (0, 1) for x in (0, 1)] == ["done", "failed", "done", "failed"]
    assert cells[1, 0]["error"] == "seed 2 is cursed; pick another."
    picture = rgb(out / "grid.png")
    left, upper, right, lower = cells[1, 0]["box"]
    tile = picture[upper:lower, left:right]
    grey = (tile == 150).all(axis=2).mean()
    assert grey > 0.8 and ink(tile) > 20  # a grey tile with a word on it
    made = {c["folder"] for c in cells.values() if c["status"] == "done"}

    second = Counting(tiny_pipeline)  # done and failed cells are skipped...
    assert main(args, make_pipeline=second.make) == 1
    assert second.runs == [] and "4 of 4 cells are already in" in capsys.readouterr().err
    assert np.array_equal(rgb(out / "grid.png"), picture)
    retry = Counting(tiny_pipeline)  # ...until --retry-failed
    assert main([*args, "--retry-failed"], make_pipeline=retry.make) == 0
    assert sorted(c.seed for c in retry.runs) == [2, 2]
    cells = described(out)["cells"]
    assert all(c["status"] == "done" for c in cells) and made < {c["folder"] for c in cells}
    left, upper, right, lower = cells[1]["box"]
    assert not (rgb(out / "grid.png")[upper:lower, left:right] == 150).all(axis=2).mean() > 0.8


def test_a_grid_without_a_seed_gives_every_cell_one_seed_and_keeps_it_on_a_rerun(tiny_files, tiny_pipeline,
                                                                                 tmp_path: Path) -> None:
    out = tmp_path / "grid"
    args = grid_args(tiny_files, out, "--x", "cutn=2,3")
    first = Counting(tiny_pipeline)
    assert main(args, make_pipeline=first.make) == 0
    seeds = {config.seed for config in first.runs}
    assert len(first.runs) == 2 and len(seeds) == 1 and None not in seeds
    second = Counting(tiny_pipeline)
    assert main(args, make_pipeline=second.make) == 0
    assert second.runs == [] and {c["seed"] for c in described(out)["cells"]} == seeds


@pytest.mark.parametrize(("axes", "message"), [
    (["--x", "cutm=2,4"], "--x 'cutm' is not a text-to-image setting; did you mean cutn?"),
    (["--x", "seed=1,two"], "--x seed=two is not a valid value of seed;"),
    (["--x", "seed=1", "--y", "cut-pow=0.5,strong"], "--y cut_pow=strong is not a valid value of cut_pow;"),
    (["--x", "cutn=0,2"], "--x cutn=0: cutn must be between 1 and 1024, not 0."),
    (["--x", "sr=dusk,dawn"], "--x sr: 'dusk' is not in the prompt 'city at night';"),
    (["--x", "seed=" + ",".join(map(str, range(9))), "--y", "steps=" + ",".join(map(str, range(1, 9)))],
     "this grid would have 72 cells and a grid holds at most 64;"),
    (["--x", "seed=1,,2"], "--x seed: every value must be non-empty;"),
    (["--x", "seed"], "--x 'seed' is not an axis; write FIELD=V1,V2,..."),
    (["--x", "vqgan=no_such_vqgan"], "--x vqgan=no_such_vqgan: there are no weights called 'no_such_vqgan';"),
    (["--x", "clip_models=a,b"], "--x clip_models cannot be an axis;"),
])
def test_bad_axes_are_one_sentence_and_load_no_model(tiny_files, tiny_pipeline, tmp_path: Path, capsys,
                                                     axes: list[str], message: str) -> None:
    out = tmp_path / "grid"
    counting = Counting(tiny_pipeline)
    assert main(grid_args(tiny_files, out, *axes), make_pipeline=counting.make) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {message}") and "\n" not in error, error
    assert counting.loads == 0 and not out.exists()
