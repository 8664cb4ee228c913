"""``python -m generator grid "PROMPT" --x FIELD=V1,V2,... [--y FIELD=V1,V2,...]``: an X/Y grid.

Every combination of the axes' values is one cell, made as a job of one batch (the models
loaded once, ``--batch-size``, ``--ray`` as ``batch`` takes them), each with its own run folder
in the grid folder (``--out``, default ``outputs/grid-<axes>-<prompt>``). Then ``grid.png``
shows the cells' images, x across and y down, with their labels; ``grid.json`` describes the
axes and each cell (its run folder, status, place in ``grid.png``). The grid folder also has
``batch.jsonl`` and the contact sheet of a batch. Running the same command again skips the
cells that are done; ``--retry-failed`` makes the failed ones again.

An axis is a text-to-image setting by its flag name (``seed=1,2,3``, ``cutn=16,32``,
``cut-pow=0.5,1``, ``size=128x128,256x256``, ``prompt="a cat","a dog"``), or ``sr=FIND,R2,...``:
search and replace in the prompt (``FIND`` must be in it; each value replaces it in turn).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from generator.batch.driver import LocalExecutor, pending, run_batch
from generator.batch.grid import GRID_PNG, MAX_CELLS, parse_axis, plan_grid, seeded, with_grid_seed, write_grid
from generator.batch.records import BatchRecords
from generator.batch.work import PipelineFactory, Worker
from generator.cli.batch import EXIT_FAILED_JOBS, add_ray_arguments, executor_from_args, progress_reporter
from generator.cli.console import EXIT_INTERRUPTED
from generator.errors import ConfigError, InputError
from generator.io.outputs import slugify
from generator.text_to_image.checks import check_settings
from generator.text_to_image.cli import DEFAULT_OUT, add_settings_arguments, settings_from_args

_AXIS_HELP = ("FIELD=V1,V2,...: a text-to-image setting by its flag name (seed, steps, cutn, lr, cut-pow, "
              "init-weight, vqgan, size, prompt, ...) and its values, or sr=FIND,R2,R3: search FIND in the prompt "
              "and replace it with each value in turn; quote a value that holds a comma")


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the grid command."""
    parser = argparse.ArgumentParser(
        prog=prog, description="An X/Y grid: one image per combination of the values of two settings, drawn as "
                               "one labelled grid.png (x across, y down), each cell with its own run folder.",
        epilog=f'Example: {prog} "a lighthouse at dusk" --x seed=1,2,3 --y cutn=16,32 (at most {MAX_CELLS} '
               "cells). Every text-to-image flag below is the setting of every cell whose axes do not set it.",
    )
    parser.add_argument("prompts", nargs="?", default=argparse.SUPPRESS, metavar="PROMPT",
                        help="the prompt of every cell ('text:weight | more text'), which sr=... edits")
    parser.add_argument("--x", required=True, metavar="FIELD=V1,V2,...", help=f"the columns: {_AXIS_HELP}")
    parser.add_argument("--y", default=None, metavar="FIELD=V1,V2,...", help="the rows, written as --x (optional)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"the grid folder (default: {DEFAULT_OUT}/grid-<axes>-<prompt>); rerunning into it "
                             "skips the cells that are done")
    parser.add_argument("--batch-size", type=int, default=1, metavar="B",
                        help="optimise B cells of the same size and models together (as batch --batch-size)")
    parser.add_argument("--retry-failed", action="store_true", help="make the cells that failed before again")
    add_ray_arguments(parser, "cells")
    add_settings_arguments(parser)
    return parser


def run(args: argparse.Namespace, make_pipeline: PipelineFactory | None = None) -> int:
    """Make a grid from parsed arguments; 0 when every cell is done, 1 when some failed.

    Every argument is checked (the axes, each cell's settings and input files) before any
    model is loaded or downloaded.
    """
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be 1 or more, not {args.batch_size}.")
    defaults = settings_from_args(args)
    x = parse_axis("--x", args.x)
    y = parse_axis("--y", args.y) if args.y is not None else None
    cells = plan_grid(defaults, x, y)
    prompt = str(defaults.get("prompts") or "")
    names = " ".join(axis.name for axis in (x, y) if axis is not None)
    folder = Path(args.out) if args.out else Path(DEFAULT_OUT) / slugify(f"grid {names} {prompt}", max_length=60)
    records = BatchRecords(folder)
    cells = with_grid_seed(cells, records, seeded(defaults, (x, y)))
    jobs = [cell.job for cell in cells]
    todo = pending(jobs, records, retry_failed=args.retry_failed)
    for job in todo:  # every cell's prompts and files, before any model is loaded or downloaded
        try:
            check_settings(job.config)
        except InputError as error:
            raise InputError(f"{job.source}: {error}") from None
    if len(jobs) > len(todo):
        print(f"{len(jobs) - len(todo)} of {len(jobs)} cells are already in {folder}; making the other {len(todo)}",
              file=sys.stderr)
    executor = executor_from_args(args, make_pipeline) if todo else LocalExecutor(Worker(make_pipeline))
    bar = tqdm(total=len(todo), unit="image", file=sys.stderr, dynamic_ncols=True, desc="grid")
    try:
        with logging_redirect_tqdm(), contextlib.closing(bar):
            summary = run_batch(jobs, folder, executor, batch_size=args.batch_size, retry_failed=args.retry_failed,
                                records=records, on_record=progress_reporter(bar), title=f"grid: {prompt}")
    except KeyboardInterrupt:
        write_grid(folder, cells, records, x, y, prompt=prompt)
        print(f"interrupted; the cells made so far are in {folder / GRID_PNG}: run the same command again to make "
              "the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    picture, _ = write_grid(folder, cells, records, x, y, prompt=prompt)
    print(f"{summary.done} done, {summary.failed} failed of {len(jobs)} cells: {picture}", file=sys.stderr)
    print(picture)
    return EXIT_FAILED_JOBS if summary.failed else 0
