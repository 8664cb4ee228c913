"""``python -m generator batch JOBS [flags]``: many images, with the models loaded once.

JOBS is a prompts file (one prompt a line), a JSONL file (one job a line: ``prompt`` plus
any config keys) or a CSV file (a header of config keys). Every text-to-image flag and
``--preset`` is the default of the jobs that do not set it. Each job writes a normal run
folder into the batch folder (``--out``, default ``outputs/<JOBS name>``), which also holds
``batch.jsonl`` (one line per job: status, error, run folder, timings) and the contact
sheet ``index.png`` / ``index.html``. Running the same command again skips the jobs that
are done; ``--retry-failed`` makes the failed ones again. ``--ray`` spreads the jobs over a
local Ray, ``--ray ADDRESS`` over a cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from generator.batch.driver import BatchSummary, Executor, LocalExecutor, checked, pending, run_batch
from generator.batch.jobs import Job, read_jobs
from generator.batch.records import BatchRecords, JobRecord
from generator.batch.work import PipelineFactory, Worker
from generator.cli.console import EXIT_INTERRUPTED
from generator.errors import ConfigError
from generator.io.outputs import slugify
from generator.text_to_image.cli import DEFAULT_OUT, add_settings_arguments, settings_from_args

EXIT_FAILED_JOBS = 1


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Parser of the batch command."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Make many images: a prompts file, JSONL or CSV of jobs, several seeds each.",
        epilog="Every text-to-image flag below is the default of the jobs that do not set it.",
    )
    parser.add_argument("jobs", metavar="JOBS", help="a .txt (one prompt a line), .jsonl or .csv file of jobs")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="images per job: seeds SEED, SEED+1, ... (random ones, recorded, without a seed)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="B",
                        help="optimise B images of the same size and models together (more images per hour on a "
                             "GPU; the same images as one at a time)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"the batch folder (default: {DEFAULT_OUT}/<JOBS file name>); rerunning into it skips "
                             "the jobs that are done")
    parser.add_argument("--retry-failed", action="store_true", help="make the jobs that failed before again")
    add_ray_arguments(parser, "jobs")
    add_settings_arguments(parser)
    return parser


def add_ray_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--ray [ADDRESS]``, ``--workers`` and ``--worker-threads`` (batch and grid), for ``what``
    is spread over the workers (``jobs``, ``cells``)."""
    ray = parser.add_argument_group("Ray (pip install .[ray])")
    ray.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help=f"spread the {what} over Ray workers: a local Ray without ADDRESS, else the cluster at "
                          "ADDRESS (`ray start --head` prints it)")
    ray.add_argument("--workers", type=int, default=None, metavar="N",
                     help="at most N workers (default: one per GPU, else one per --worker-threads CPUs)")
    ray.add_argument("--worker-threads", type=int, default=None, metavar="T",
                     help="CPU threads per worker where there is no GPU (default 4)")


def run(args: argparse.Namespace, make_pipeline: PipelineFactory | None = None) -> int:
    """Run a batch from parsed arguments; 0 when every job is done, 1 when some failed."""
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be 1 or more, not {args.batch_size}.")
    defaults = settings_from_args(args)
    folder = Path(args.out) if args.out else Path(DEFAULT_OUT) / slugify(Path(args.jobs).stem)
    records = BatchRecords(folder)

    def seed_of(job: Job) -> int | None:
        record = records.find(job.id, job.fingerprint)
        return record.seed if record is not None else None

    jobs = read_jobs(Path(args.jobs), defaults, seeds=args.seeds, seed_of=seed_of)
    todo = pending(jobs, records, retry_failed=args.retry_failed)
    skipped = len(jobs) - len(todo)
    if skipped:
        print(f"{skipped} of {len(jobs)} jobs are already in {folder}; making the other {len(todo)}",
              file=sys.stderr)
    runnable, _ = checked(todo)  # bad jobs fail at once: no executor (nor Ray, nor a model) for them alone
    executor = executor_from_args(args, make_pipeline) if runnable else LocalExecutor(Worker(make_pipeline))
    bar = tqdm(total=len(todo), unit="image", file=sys.stderr, dynamic_ncols=True, desc="batch")
    try:
        with logging_redirect_tqdm(), contextlib.closing(bar):
            summary = run_batch(jobs, folder, executor, batch_size=args.batch_size, retry_failed=args.retry_failed,
                                records=records, on_record=progress_reporter(bar), title=Path(args.jobs).name)
    except KeyboardInterrupt:
        print(f"interrupted; the jobs written so far are in {folder}: run the same command again to make the rest",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{summary.done} done, {summary.failed} failed of {len(jobs)} jobs: {folder / 'index.html'}",
          file=sys.stderr)
    print(folder)
    return EXIT_FAILED_JOBS if summary.failed else 0


def executor_from_args(args: argparse.Namespace, make_pipeline: PipelineFactory | None) -> Executor:
    """The executor the batch flags ask for: a local worker, or Ray workers with ``--ray``
    (shared by ``batch`` and ``grid``)."""
    options = dict(device=args.device, weights_dir=args.weights_dir, offline=args.offline)
    if args.ray is None:
        return LocalExecutor(Worker(make_pipeline, **options))
    from generator.batch.ray_runner import RayExecutor

    return RayExecutor(args.ray, make_pipeline, workers=args.workers, threads=args.worker_threads, **options)


def progress_reporter(bar: tqdm) -> Callable[[JobRecord, BatchSummary], None]:
    """An ``on_record`` callback that advances ``bar`` and says each failed job above it."""
    done = failed = 0

    def update(record: JobRecord, summary: BatchSummary) -> None:
        nonlocal done, failed
        if record.status == "done":
            done += 1
        else:
            failed += 1
            tqdm.write(f"failed: job {record.id} ({record.source}): {record.error}", file=sys.stderr)
        bar.set_postfix(done=done, failed=failed, refresh=False)
        bar.update(1)

    return update
