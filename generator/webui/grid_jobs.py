"""The web UI's X/Y grid: the Text to image form's settings, one or two axes, and one image per
combination, made with the models the page already has loaded.

The grid is the command line's (:mod:`generator.batch.grid`: the same axes, cells, records,
``grid.png`` and ``grid.json``), in a grid folder of its own in the outputs folder that belongs
to the visitor who made it. Unlike ``python -m generator grid``, each cell is made here, in
the page's job, so the live preview shows the cell being made and Stop ends the grid within a
step: the stopped cell keeps its latest image (as a stopped run does), the grid image shows
the cells made so far, and the same grid made again makes only the cells still missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from generator.batch.driver import job_record
from generator.batch.grid import (
    GRID_JSON,
    GRID_PNG,
    Axis,
    Cell,
    parse_axis,
    plan_grid,
    seeded,
    with_grid_seed,
    write_grid,
)
from generator.batch.index import write_index
from generator.batch.records import BatchRecords
from generator.config import GenerationConfig
from generator.drive import RunRecord, drive
from generator.errors import GeneratorError, InputError
from generator.events import Preview, Progress
from generator.io.outputs import new_folder, slugify
from generator.text_to_image.checks import check_settings
from generator.text_to_image.mode import TEXT_TO_IMAGE
from generator.webui.gallery import record_owner
from generator.webui.jobs import Update, describe
from generator.webui.studio import Session, Studio

MAX_WEB_CELLS = 16
"""The most cells a grid made from the web page may have (the command line allows more)."""
AXIS_CHOICES: list[tuple[str, str]] = [
    ("Seed", "seed"), ("Steps", "steps"), ("Cutouts", "cutn"), ("Cutout size power", "cut_pow"),
    ("Learning rate", "lr"), ("Init weight", "init_weight"), ("Smoothness (TV) weight", "tv_weight"),
    ("Size (WIDTHxHEIGHT)", "size"), ("VQGAN", "vqgan"), ("Prompt", "prompt"),
    ("Prompt search/replace", "sr"), ("Variation strength", "variation_strength"),
]
"""The settings the grid panel offers as axes (label, field); any other setting may be typed."""


def parse_web_axis(name: str, field: str | None, values: str | None) -> Axis | None:
    """The axis the panel's ``field`` menu and ``values`` box give (``name`` is ``X`` or ``Y``);
    None when both are empty.

    Raises:
        ConfigError: a value that is not one of the setting's, or values without a setting.
        InputError: a setting without values.
    """
    field, values = (field or "").strip(), (values or "").strip()
    if not field and not values:
        return None
    if not field:
        raise InputError(f"choose the setting the {name} values are for, or clear them.")
    if not values:
        raise InputError(f"give the {name} values of {field}, separated by commas (such as 1, 2, 3).")
    return parse_axis(name, f"{field}={values}")


def grid_folder(studio: Studio, prompt: str, axes: Sequence[Axis]) -> Path:
    """A new grid folder in the outputs folder: ``grid-<axes>-<prompt>-<time>`` (never another
    visitor's grid of the same prompt and axes), created.

    Raises:
        OutputError: it cannot be created.
    """
    names = " ".join(axis.name for axis in axes)
    return new_folder(studio.outputs_dir, f"{slugify(f'grid {names} {prompt}', max_length=60)}-"
                                          f"{time.strftime('%Y%m%d-%H%M%S')}")


def grid_job(studio: Studio, config: GenerationConfig, x: Axis, y: Axis | None, session: Session, *,
             folder: Path | None = None, checked: Callable[[GenerationConfig], GenerationConfig] | None = None,
             ) -> Iterator[Update]:
    """Make the grid of ``config`` (the form's settings) over the axes ``x`` and ``y``, writing
    the grid folder (``folder``, default a new one, see :func:`grid_folder`) as ``python -m
    generator grid`` does; the final update's ``result`` is ``grid.png``.

    Every cell is planned and checked before any model is loaded: ``checked(config)`` gives the
    config a cell may use (the page's path policy: an axis may name files too) or raises. A cell
    that fails is a grey tile with its error in ``grid.json``; the others go on.
    """
    defaults = config.to_dict()
    prompt = config.prompts
    cells = plan_grid(defaults, x, y, max_cells=MAX_WEB_CELLS)
    if checked is not None:
        cells = [dataclasses.replace(cell, job=dataclasses.replace(cell.job, config=checked(cell.job.config)))
                 for cell in cells]
    for cell in cells:  # before any model is loaded or downloaded, or any folder made
        try:
            check_settings(cell.job.config)
        except InputError as error:
            raise InputError(f"the cell {', '.join(cell.labels)}: {error}") from None
    folder = Path(folder) if folder is not None else grid_folder(studio, prompt, [a for a in (x, y) if a])
    records = BatchRecords(folder)
    cells = with_grid_seed(cells, records, seeded(defaults, (x, y)))
    with session.running():
        folder.mkdir(parents=True, exist_ok=True)
        if session.owner:
            record_owner(studio.owners, folder, session.owner)
        finished = False
        try:
            for number, cell in enumerate(cells, start=1):
                if not _done(records, cell):
                    yield from _make_cell(studio, session, folder, records, cell, f"cell {number} of {len(cells)}")
            finished = True
        finally:  # done, failed or stopped: the grid shows what was made
            made = [record for record in (records.find(c.job.id, c.job.fingerprint) for c in cells) if record]
            picture, described = write_grid(folder, cells, records, x, y, prompt=prompt)
            write_index(folder, made, title=f"grid: {prompt}")
            session.record = RunRecord(TEXT_TO_IMAGE.name, status="done" if finished else "stopped", folder=folder,
                                       result=picture,
                                       files=[picture, described])
        done = [record for record in made if record.status == "done"]
        failed = next((record for record in made if record.status == "failed"), None)
        said = f"; {failed.id} failed: {failed.error}" if failed is not None else ""
        cells_zip = _cells_zip(folder, cells, records) if done else None
        yield Update(status=f"grid done: {len(done)} of {len(cells)} cells{said} · {folder.name}",
                     result=str(picture),
                     files=[str(picture), str(described), *([str(cells_zip)] if cells_zip else [])],
                     info=f"{prompt} · {' × '.join(str(len(a.values)) for a in (x, y) if a)} grid · {folder.name}")


def _cells_zip(folder: Path, cells: Sequence[Cell], records: BatchRecords) -> Path:
    """The images of the cells made, as one zip in a temporary folder, each named by its place and
    labels (``x2y1 seed=2 cutn=16.png``); the grid folder itself keeps them in their run folders."""
    destination = Path(tempfile.mkdtemp(prefix="vqgan-studio-grid-")) / f"{folder.name}-cells.zip"
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_STORED) as archive:
        for cell in cells:
            record = records.find(cell.job.id, cell.job.fingerprint)
            final = folder / record.folder / "final.png" if record and record.folder else None
            if record is not None and record.status == "done" and final is not None and final.is_file():
                name = slugify(f"{cell.job.id} {' '.join(cell.labels)}", max_length=80)
                archive.write(final, f"{name}.png")
    return destination


def _done(records: BatchRecords, cell: Cell) -> bool:
    found = records.find(cell.job.id, cell.job.fingerprint)
    return found is not None and found.status == "done"


def _make_cell(studio: Studio, session: Session, folder: Path, records: BatchRecords, cell: Cell,
               where: str) -> Iterator[Update]:
    """Make one cell into its run folder in the grid folder, streaming its previews; record it
    in ``batch.jsonl`` however it ends (a Stop records it as stopped, keeping its image)."""
    label = ", ".join(cell.labels)
    yield Update(status=f"{where}: {label}…")
    pipeline = studio.text_to_image_for(cell.job.config.models)
    record = session.record = RunRecord(TEXT_TO_IMAGE.name)
    started = time.perf_counter()
    try:
        with contextlib.closing(drive(pipeline.run(cell.job.config), folder, record=record)) as events:
            for event in events:
                if isinstance(event, Preview):
                    yield Update(preview=event.image)
                elif isinstance(event, Progress):
                    yield Update(progress=(event.step, event.total, f"{where} ({label}) · {describe(event)}"))
    except GeneratorError as error:  # this cell failed: a grey tile with its error, and the next cell
        record.status, record.error = "failed", str(error)
    finally:
        error = record.error if record.status == "failed" else "stopped"
        records.append(job_record(cell.job, record, folder, error=error, seconds=time.perf_counter() - started,
                                  worker="web page", device=str(pipeline.device)))


__all__ = ["AXIS_CHOICES", "GRID_JSON", "GRID_PNG", "MAX_WEB_CELLS", "grid_job", "parse_web_axis"]
