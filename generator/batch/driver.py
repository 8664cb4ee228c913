"""The batch driver: plan which jobs to make, hand them to an executor, write what comes back.

Executors (:class:`LocalExecutor` in this process, :class:`~generator.batch.ray_runner.RayExecutor`
over a Ray cluster) only make images; every file is written here, in the driver's process,
through the one run driver :func:`generator.drive.drive`, so each job's run folder holds the
same files as a single run. A job is written once even if a result arrives twice (a worker
that died after finishing it), and every job that ends gets a line in ``batch.jsonl``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from generator.batch.index import write_index
from generator.batch.jobs import Job
from generator.batch.records import BatchRecords, JobRecord
from generator.batch.work import JobResult, Worker, bare_state, group_jobs, replay
from generator.config import GenerationConfig
from generator.drive import RunRecord, drive
from generator.errors import GeneratorError
from generator.text_to_image.checks import check_settings
from generator.text_to_image.pipeline import TextToImage

logger = logging.getLogger(__name__)


class Executor(Protocol):
    """Makes groups of jobs somewhere and yields their results as they finish (any order)."""

    def results(self, groups: Sequence[Sequence[Job]]) -> Iterator[JobResult]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Makes the groups one after another in this process, with one :class:`Worker`."""

    def __init__(self, worker: Worker):
        self.worker = worker

    def results(self, groups: Sequence[Sequence[Job]]) -> Iterator[JobResult]:
        for group in groups:
            yield from self.worker.run(group)

    def close(self) -> None:
        pass


@dataclass
class BatchSummary:
    """How a batch went.

    Attributes:
        folder: the batch folder.
        records: the latest record of every job of the jobs file, in its order (None for
            a job that has not ended, e.g. after Ctrl-C).
        skipped: jobs not made because an earlier run had finished them (or failed them,
            without ``retry_failed``).
        made: jobs made in this run.
    """

    folder: Path
    records: list[JobRecord | None] = field(default_factory=list)
    skipped: int = 0
    made: int = 0

    @property
    def done(self) -> int:
        return sum(1 for r in self.records if r is not None and r.status == "done")

    @property
    def failed(self) -> int:
        return sum(1 for r in self.records if r is not None and r.status == "failed")


def write_result(result: JobResult, out_dir: Path) -> RunRecord:
    """Write a job's result into a new run folder under ``out_dir``, as a single run would
    be written (a failed job keeps its latest image, if any). Never raises for the job's
    own failure: the returned record says what happened."""
    record = RunRecord(result.state.mode)
    try:
        for _ in drive(replay(result), Path(out_dir), record=record):
            pass
    except GeneratorError as error:
        if record.status not in ("failed", "stopped"):
            record.status, record.error = "failed", str(error)
    return record


def pending(jobs: Sequence[Job], records: BatchRecords, *, retry_failed: bool = False) -> list[Job]:
    """The jobs still to make: not done before (and not failed before, unless ``retry_failed``)."""
    todo = []
    for job in jobs:
        previous = records.find(job.id, job.fingerprint)
        if previous is None or (previous.status == "failed" and retry_failed):
            todo.append(job)
    return todo


def checked(jobs: Sequence[Job]) -> tuple[list[Job], list[JobResult]]:
    """(the jobs that pass the checks a run makes before any model is loaded, the failed results
    of those that do not): a bad prompt or a missing file fails its job at once, and a batch
    whose every job is bad loads and downloads nothing."""
    runnable, refused = [], []
    for job in jobs:
        try:
            check_settings(job.config)
        except GeneratorError as error:
            refused.append(JobResult(job.id, bare_state(job.config), error=error, worker="checks"))
        else:
            runnable.append(job)
    return runnable, refused


def run_batch(jobs: Sequence[Job], folder: Path, executor: Executor, *, batch_size: int = 1,
              retry_failed: bool = False, records: BatchRecords | None = None,
              on_record: Callable[[JobRecord, BatchSummary], None] | None = None,
              title: str = "batch") -> BatchSummary:
    """Make the pending ``jobs`` with ``executor`` and write them into ``folder``.

    Each job gets its run folder in ``folder`` and a line in ``batch.jsonl``; the contact
    sheet (``index.png``, ``index.html``) is written at the end, also after Ctrl-C.
    ``on_record(record, summary)`` is called after each job is written (a progress bar).
    """
    folder = Path(folder)
    records = records if records is not None else BatchRecords(folder)
    todo = pending(jobs, records, retry_failed=retry_failed)
    by_id = {job.id: job for job in todo}
    summary = BatchSummary(folder, skipped=len(jobs) - len(todo))
    position = {job.id: index for index, job in enumerate(jobs)}
    summary.records = [records.find(job.id, job.fingerprint) for job in jobs]
    written: set[str] = set()
    runnable, refused = checked(todo)
    try:
        for result in itertools.chain(refused, executor.results(group_jobs(runnable, batch_size))):  # lazily
            job = by_id.get(result.job_id)
            if job is None or result.job_id in written:
                logger.info("job %s came back again; it was written already", result.job_id)
                continue
            written.add(result.job_id)
            record = _record(job, result, write_result(result, folder), folder)
            records.append(record)
            summary.records[position[job.id]] = record
            summary.made += 1
            if on_record is not None:
                on_record(record, summary)
    finally:
        executor.close()
        write_index(folder, [r for r in summary.records if r is not None], title=title)
    return summary


def _record(job: Job, result: JobResult, run: RunRecord, folder: Path) -> JobRecord:
    return job_record(job, run, folder, error=run.error or (str(result.error) if result.error else None),
                      seconds=result.seconds, worker=result.worker, device=result.device,
                      config=result.state.config, attempts=result.attempts)


def job_record(job: Job, run: RunRecord, folder: Path, *, error: str | None, seconds: float, worker: str,
               device: str, config: Mapping[str, Any] | None = None, attempts: int = 1) -> JobRecord:
    """The ``batch.jsonl`` line of ``job``, whose run (``run``) wrote into the batch ``folder``:
    done, or failed with ``error`` (a run that did not finish counts as failed); its config is
    the finished run's, else ``config`` (default: the job's own)."""
    done = run.done
    status = "done" if run.status == "done" else "failed"
    return JobRecord(id=job.id, source=job.source, fingerprint=job.fingerprint, status=status,
                     prompt=job.config.prompts, seed=job.config.seed,
                     config=dict(done.config) if done else dict(config or job.config.to_dict()),
                     error=error if status == "failed" else None,
                     folder=str(run.folder.relative_to(folder)) if run.folder else None,
                     timings={**(dict(done.timings) if done else {}), "worker_seconds": seconds},
                     worker=worker, device=device, attempts=attempts)


def make_many(pipeline: TextToImage, configs: Sequence[GenerationConfig], *,
              batch_size: int = 1) -> Iterator[JobResult]:
    """Make ``configs`` with an already loaded pipeline, ``batch_size`` at a time optimised
    together where their settings allow, yielding each job's :class:`JobResult` (``job_id`` is
    the config's index as text) as it ends; :func:`write_result` writes one into a run folder.

    This is the in-process API for front ends (the web UI's batch count): no files, no Ray.
    """
    jobs = [Job(str(index), config.with_seed(), "", f"image {index + 1}") for index, config in enumerate(configs)]
    yield from LocalExecutor(Worker.around(pipeline)).results(group_jobs(jobs, batch_size))
