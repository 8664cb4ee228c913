"""The axis grammar: settings by leaf, flag or dotted name, values typed as batch's CSV cells are,
quoted values with commas, and prompt search and replace."""

from __future__ import annotations

import pytest

from generator.batch.grid import parse_axis, plan_grid
from generator.errors import ConfigError


@pytest.mark.parametrize(("text", "field", "values"), [
    ("seed=1, 2,3", "seed", (1, 2, 3)),
    ("--cut-pow=0.5,1", "cut_pow", (0.5, 1.0)),
    ("cutouts.cutn=8,16", "cutn", (8, 16)),
    ("size=32x32,64x48", "size", ([32, 32], [64, 48])),
    ("augments=Af Pe,Af", "augments", (["Af", "Pe"], ["Af"])),
    ("video=true,false", "video", (True, False)),
    ('prompt="a cat, asleep",a dog', "prompts", ("a cat, asleep", "a dog")),
    ('sr=dusk,"dawn, misty",noon', "sr", ("dusk", "dawn, misty", "noon")),
])
def test_an_axis_reads_its_field_and_typed_values(text: str, field: str, values: tuple) -> None:
    axis = parse_axis("--x", text)
    assert (axis.field, axis.values) == (field, values)


def test_labels_name_the_field_as_written_and_search_and_replace_by_its_text() -> None:
    assert [parse_axis("--x", "prompt=a,b").label(i) for i in (0, 1)] == ["prompt=a", "prompt=b"]
    assert parse_axis("--y", "sr=dusk,dawn").label(1) == "dawn"


def test_cells_go_across_then_down_and_two_search_and_replace_axes_apply_in_turn() -> None:
    defaults = {"prompts": "a red boat at dusk", "seed": 1}
    cells = plan_grid(defaults, parse_axis("--x", "sr=red,blue,green"), parse_axis("--y", "sr=dusk,dawn"))
    assert [(c.x, c.y, c.job.id) for c in cells[:4]] == [(0, 0, "x1y1"), (1, 0, "x2y1"), (2, 0, "x3y1"),
                                                         (0, 1, "x1y2")]
    assert [c.job.config.prompts for c in cells] == [
        "a red boat at dusk", "a blue boat at dusk", "a green boat at dusk",
        "a red boat at dawn", "a blue boat at dawn", "a green boat at dawn"]
    with pytest.raises(ConfigError, match="--y sr: 'green' is not in the prompt 'a red boat at dusk'"):
        plan_grid(defaults, parse_axis("--x", "sr=red,blue"), parse_axis("--y", "sr=green,grey"))


def test_a_grid_needs_a_prompt_unless_an_axis_gives_each_cell_one() -> None:
    with pytest.raises(ConfigError, match="^a grid needs a prompt; give it first"):
        plan_grid({"seed": 1}, parse_axis("--x", "cutn=2,4"))
    cells = plan_grid({"seed": 1}, parse_axis("--x", "cutn=2,4"), parse_axis("--y", "prompt=a cat,a dog"))
    assert [c.job.config.prompts for c in cells] == ["a cat", "a cat", "a dog", "a dog"]
    with pytest.raises(ConfigError, match="^--x cutn=0: cutn must be between 1 and 1024, not 0.$"):
        plan_grid({}, parse_axis("--x", "cutn=0,4"), parse_axis("--y", "prompt=a cat,a dog"))
