"""X/Y grids: one prompt, every combination of the values of two axes, each cell a batch job.

An axis is written ``FIELD=V1,V2,...``:

* ``FIELD`` is a text-to-image setting by its leaf (flag) name: ``seed``, ``steps``, ``cutn``,
  ``lr``, ``cut_pow`` (or ``cut-pow``), ``init_weight``, ``vqgan``, ``size`` (``256x256``) ...;
  ``prompt`` replaces the whole prompt. Each value is read as a CSV cell of a batch jobs file is.
* ``sr=FIND,R2,R3`` is prompt search and replace (AUTOMATIC1111's "Prompt S/R"): the first value
  is searched in the prompt, and each value in turn replaces every occurrence of it (so the first
  cell keeps the prompt as written).

Values are separated by commas; a value holding a comma is quoted (``sr="dusk, late",dawn``).
Everything is checked here, before any model loads: each mistake is one :class:`ConfigError`
sentence. :func:`plan_grid` turns the axes into :class:`Cell` s, each with its
:class:`~generator.batch.jobs.Job` (id ``x<i>y<j>``), which the batch driver makes and
records like any other job; :mod:`generator.batch.grid_image` draws ``grid.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from generator.batch.grid_image import draw_grid
from generator.batch.jobs import Job, cell_value, parse_jobs
from generator.batch.records import BatchRecords
from generator.config import GenerationConfig, new_seed
from generator.config_schema import field_paths, leaf_hints
from generator.errors import ConfigError, OutputError, WeightsError
from generator.io.atomic_files import replace_bytes_atomic
from generator.io.images import png_bytes
from generator.weights import store

GRID_PNG = "grid.png"
GRID_JSON = "grid.json"
SEARCH_REPLACE = "sr"
"""The field name of the prompt search-and-replace axis."""
MAX_CELLS = 64
"""The most cells a grid may have."""

_ALIASES = {"prompt": "prompts"}
_NOT_AXES = {"clip_models": "give the CLIP models with --clip-model and make one grid per ensemble"}
_WEIGHTS = {"vqgan": "vqgan", "prior": "transformer", "upscale_model": "upscaler"}
"""Fields naming weights: the registry kind their values must be (or an existing file)."""
_PARSE_NAME = "grid"  # the name parse_jobs gives its messages ("grid line 1: ...")


@dataclass(frozen=True)
class Axis:
    """One axis of a grid.

    Attributes:
        flag: the option that gave it (``--x``), for messages.
        field: the setting's leaf name (``cutn``), or :data:`SEARCH_REPLACE`.
        values: the typed plain values (the texts themselves for search and replace).
        texts: the values as written, for labels.
    """

    flag: str
    field: str
    values: tuple[Any, ...]
    texts: tuple[str, ...]

    @property
    def search_replace(self) -> bool:
        """Whether this axis searches and replaces text in the prompt."""
        return self.field == SEARCH_REPLACE

    @property
    def name(self) -> str:
        """The axis's field as people write it (``prompt`` rather than ``prompts``)."""
        return next((alias for alias, leaf in _ALIASES.items() if leaf == self.field), self.field)

    def label(self, index: int) -> str:
        """The label of value ``index``: ``cutn=16``, or the replacement text of a search-and-replace axis."""
        return self.texts[index] if self.search_replace else f"{self.name}={self.texts[index]}"

    def to_plain(self) -> dict[str, Any]:
        """The axis for ``grid.json``."""
        return {"field": self.name, "kind": "search-replace" if self.search_replace else "setting",
                "values": list(self.values), "labels": [self.label(i) for i in range(len(self.values))]}


@dataclass(frozen=True)
class Cell:
    """One cell of a grid: column ``x``, row ``y`` (0 for a grid without ``--y``), and its job."""

    x: int
    y: int
    labels: tuple[str, ...]
    job: Job


def parse_axis(flag: str, text: str) -> Axis:
    """The axis written ``FIELD=V1,V2,...`` (see the module's docstring).

    Raises:
        ConfigError: no ``=``, an unknown or unusable field (with the nearest names), no value,
            an empty value, or a value of the wrong type.
    """
    name, equals, rest = text.partition("=")
    if not equals or not name.strip():
        raise ConfigError(f"{flag} {text!r} is not an axis; write FIELD=V1,V2,... such as seed=1,2,3 or "
                          "sr=dusk,dawn,noon (search and replace in the prompt).")
    field = _field(flag, name.strip())
    try:
        texts = next(csv.reader([rest], skipinitialspace=True), [])
    except csv.Error as error:
        raise ConfigError(f"{flag} {field}: the values {rest!r} cannot be read ({error}); separate them with commas "
                          'and put a value holding a comma in double quotes.') from None
    if field != SEARCH_REPLACE:
        texts = [value.strip() for value in texts]
    if not texts or any(not value.strip() for value in texts):
        raise ConfigError(f"{flag} {field}: every value must be non-empty; write {field}=V1,V2,... with values "
                          "separated by commas.")
    if field == SEARCH_REPLACE:
        return Axis(flag, field, tuple(texts), tuple(texts))
    hint = leaf_hints(GenerationConfig)[field]
    values = []
    for value in texts:
        try:
            values.append(cell_value(hint, value, Path(flag), 0, field))
        except ConfigError:
            raise ConfigError(f"{flag} {field}={value} is not a valid value of {field}; {field} takes "
                              f"{_kind(hint)}.") from None
    return Axis(flag, field, tuple(values), tuple(texts))


def _kind(hint: Any) -> str:
    """What values of a setting of type ``hint`` look like, for a message."""
    text = str(hint)
    if "bool" in text:
        return "true or false"
    if "tuple[int" in text:
        return "a size written WIDTHxHEIGHT, such as 256x256"
    if "int" in text:
        return "whole numbers"
    if "float" in text:
        return "numbers, such as 0.5"
    return "a text"


def _field(flag: str, name: str) -> str:
    """The leaf name of the field an axis names: a leaf or flag name, a dotted path, or ``sr``."""
    key = name.lstrip("-").replace("-", "_").lower()
    if key in (SEARCH_REPLACE, "prompt_s/r", "s/r"):
        return SEARCH_REPLACE
    paths = field_paths(GenerationConfig)
    by_path = {path: leaf for leaf, path in paths.items()}
    key = by_path.get(key, _ALIASES.get(key, key))
    if key in _NOT_AXES:
        raise ConfigError(f"{flag} {name} cannot be an axis; {_NOT_AXES[key]}.")
    if key in paths:
        return key
    known = [leaf for leaf in paths if leaf not in _NOT_AXES] + [*_ALIASES, SEARCH_REPLACE]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(f"{flag} {name!r} is not a text-to-image setting; {hint}an axis is a setting such as seed, "
                      "steps, cutn or lr, or sr for search and replace in the prompt.")


def plan_grid(defaults: Mapping[str, Any], x: Axis, y: Axis | None = None, *,
              max_cells: int = MAX_CELLS) -> list[Cell]:
    """The cells of the grid, row by row (``y`` down, ``x`` across), each with its job.

    ``defaults`` are the plain settings every cell starts from (the command's flags, its
    preset, the prompt). A cell without a seed gets none here (see :func:`with_grid_seed`).

    Raises:
        ConfigError: too many cells, no prompt, a value the settings refuse, a weights name
            that is neither a file nor in the registry, or a search text not in the prompt.
    """
    axes = [axis for axis in (x, y) if axis is not None]
    count = len(x.values) * (len(y.values) if y is not None else 1)
    if count > max_cells:
        raise ConfigError(f"this grid would have {count} cells and a grid holds at most {max_cells}; use fewer "
                          "values or split it into several grids.")
    prompt = str(defaults.get("prompts") or "")
    prompt_axis = next((axis for axis in axes if axis.field == "prompts"), None)
    if not prompt.strip() and prompt_axis is None:
        raise ConfigError("a grid needs a prompt; give it first: python -m generator grid \"a lighthouse at dusk\" "
                          "--x seed=1,2,3.")
    filler = {"prompts": prompt_axis.values[0]} if prompt_axis is not None and not prompt.strip() else {}
    _job(filler, defaults, "the grid's settings")
    for axis in axes:
        if not axis.search_replace:
            for value, text in zip(axis.values, axis.texts, strict=True):
                _check_weights(axis, value, text)
                _job({**filler, axis.field: value}, defaults, f"{axis.flag} {axis.field}={text}")
    cells = []
    for j in range(len(y.values) if y is not None else 1):
        for i in range(len(x.values)):
            picks = [(x, i)] + ([(y, j)] if y is not None else [])
            labels = tuple(axis.label(k) for axis, k in picks)
            keys = _cell_keys(picks, prompt)
            job = _job(keys, defaults, f"the cell {', '.join(labels)}")
            ident = f"x{i + 1}" + (f"y{j + 1}" if y is not None else "")
            cells.append(Cell(i, j, labels, dataclasses.replace(job, id=ident, source=f"cell {', '.join(labels)}")))
    return cells


def _cell_keys(picks: Sequence[tuple[Axis, int]], prompt: str) -> dict[str, Any]:
    """The settings of the cell at ``picks``: the settings' values, then each search and replace
    on the prompt (in axis order)."""
    keys: dict[str, Any] = {axis.field: axis.values[k] for axis, k in picks if not axis.search_replace}
    text = keys.get("prompts", prompt)
    for axis, k in picks:
        if axis.search_replace:
            search = axis.values[0]
            if search not in text:
                raise ConfigError(f"{axis.flag} sr: {search!r} is not in the prompt {text!r}; the first value of "
                                  "sr=... is the text of the prompt that each value replaces.")
            text = text.replace(search, axis.values[k])
            keys["prompts"] = text
    return keys


def _job(keys: Mapping[str, Any], defaults: Mapping[str, Any], what: str) -> Job:
    """The job of ``keys`` over ``defaults``, built as a batch job; a refusal names ``what``."""
    try:
        (job,) = parse_jobs([keys], defaults, name=_PARSE_NAME)
    except ConfigError as error:
        reason = str(error).removeprefix(f"{_PARSE_NAME} line 1").lstrip(": ")
        raise ConfigError(f"{what}: {reason}") from None
    return job


def _check_weights(axis: Axis, value: Any, text: str) -> None:
    """A weights field's value must be a file or a registry name, known before anything loads."""
    if axis.field not in _WEIGHTS or value is None or Path(str(value)).expanduser().is_file():
        return
    try:
        store.get(str(value))
    except WeightsError as error:
        raise ConfigError(f"{axis.flag} {axis.field}={text}: {error}") from None


def with_grid_seed(cells: Sequence[Cell], records: BatchRecords, seeded: bool) -> list[Cell]:
    """The cells with one seed for all, when the grid sets none (``seeded`` False): the seed an
    earlier run of this grid recorded (so a rerun finds its finished cells), else a new one."""
    if seeded:
        return list(cells)
    found = (records.find(cell.job.id, cell.job.fingerprint) for cell in cells)
    seed = next((record.seed for record in found if record is not None and record.seed is not None), None)
    seed = new_seed() if seed is None else seed
    return [dataclasses.replace(cell, job=cell.job.with_seed(seed)) for cell in cells]


def seeded(defaults: Mapping[str, Any], axes: Sequence[Axis | None]) -> bool:
    """Whether the grid's settings or an axis set the seed."""
    return defaults.get("seed") is not None or any(axis is not None and axis.field == "seed" for axis in axes)


def write_grid(folder: Path, cells: Sequence[Cell], records: BatchRecords, x: Axis, y: Axis | None = None, *,
               prompt: str = "") -> tuple[Path, Path]:
    """Draw ``grid.png`` of the cells as ``records`` has them (a cell that failed, or was not
    made yet, is a grey tile) and write ``grid.json`` (the axes, and each cell's labels, status,
    run folder and place in the image); both replace earlier ones. Returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = max(cell.y for cell in cells) + 1
    tiles: list[list[Image.Image | str]] = [["not made"] * len(x.values) for _ in range(rows)]
    described = []
    for cell in cells:
        record = records.find(cell.job.id, cell.job.fingerprint)
        status = record.status if record is not None else "not made"
        final = folder / record.folder / "final.png" if record is not None and record.folder else None
        if status == "done" and final is not None:
            try:
                with Image.open(final) as image:
                    tiles[cell.y][cell.x] = image.convert("RGB")
            except OSError as error:
                raise OutputError(f"the image of the cell {', '.join(cell.labels)} ({final}) cannot be read "
                                  f"({error}); make that cell again with --retry-failed after moving it away.") \
                    from None
        else:
            tiles[cell.y][cell.x] = "failed" if status == "failed" else "not made"
        described.append({"x": cell.x, "y": cell.y, "labels": list(cell.labels), "job": cell.job.id,
                          "status": status, "prompt": cell.job.config.prompts, "seed": cell.job.config.seed,
                          "folder": record.folder if record is not None else None,
                          "error": record.error if record is not None else None})
    picture, layout = draw_grid(tiles, [x.label(i) for i in range(len(x.values))],
                                [y.label(j) for j in range(len(y.values))] if y is not None else None)
    for entry in described:
        entry["box"] = list(layout.box(entry["x"], entry["y"]))
    plain = {"prompt": prompt, "image": GRID_PNG, "axes": {"x": x.to_plain(), **({"y": y.to_plain()} if y else {})},
             "layout": layout.to_plain(), "cells": described}
    png = replace_bytes_atomic(folder / GRID_PNG, png_bytes(picture, None), folder=folder)
    text = json.dumps(plain, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return png, replace_bytes_atomic(folder / GRID_JSON, text.encode("utf-8"), folder=folder)
