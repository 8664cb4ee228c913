"""The worker's side of a batch: load the models once, make jobs, hand back what they produced.

A :class:`Worker` runs where the models are (this process, or a Ray actor on another
machine). It writes nothing: each job comes back as a :class:`JobResult` (the events that
make files, the resolved config, how far it got, its error) which travels to the driver;
:func:`replay` turns it into a :class:`GenerationRun` that :func:`generator.drive.drive`
writes exactly like a run made in the driver's process.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from generator.batch.jobs import Job
from generator.config import GenerationConfig, ModelsConfig
from generator.devices import use_threads
from generator.errors import GeneratorError, summary
from generator.events import Done, Event, Progress
from generator.runs import GenerationRun, RunState
from generator.text_to_image.batched import ALL, batch_key
from generator.text_to_image.mode import TEXT_TO_IMAGE
from generator.text_to_image.pipeline import TextToImage
from generator.workbench import Workbench

logger = logging.getLogger(__name__)

PipelineFactory = Callable[..., TextToImage]
"""``make(models, bench=...)`` -> the pipeline of ``models`` from the worker's workbench
(``TextToImage.from_workbench``; tests pass tiny models)."""


class JobFailed(GeneratorError):
    """A job failed with an error that was not one the user can act on directly (a bug, a crash)."""


@dataclass
class JobResult:
    """What a job produced, small enough to send between machines (no tensors).

    Attributes:
        job_id: the job's id.
        state: the run's mode, label, resolved config, step reached and total (no decoder).
        events: the events that make files (notices, previews, the final Done), in order.
        error: the job's failure, or None.
        latest: the latest image of a failed job (kept as ``final.png``, as a single run does).
        latent: the run's latest latent on the CPU, where the run offers it (saved to continue from).
        seconds: time the worker spent on it (shared by the images of a batch).
        worker: ``host:pid`` of the worker that made it.
        device: the device it was made on (``cuda:0``, ``cpu``).
        attempts: how many times it was started (more than once when a worker died).
        loads: how many times its worker had loaded models when it finished (1: loaded once).
    """

    job_id: str
    state: RunState
    events: list[Event] = field(default_factory=list)
    error: GeneratorError | None = None
    latest: Image.Image | None = None
    latent: Any = None
    seconds: float = 0.0
    worker: str = ""
    device: str = ""
    attempts: int = 1
    loads: int = 0

    @property
    def done(self) -> Done | None:
        """The final event of a finished job."""
        return next((event for event in self.events if isinstance(event, Done)), None)


def replay(result: JobResult) -> GenerationRun:
    """A finished (or failed) job as a run that yields its events again; a failed one raises
    its error at the end, with its latest image to keep."""
    state = RunState(result.state.mode, result.state.label, dict(result.state.config), result.state.step,
                     result.state.total)
    if result.latest is not None:
        latest = result.latest
        state.decode = lambda: latest
    if result.latent is not None:
        latent = result.latent
        state.latent = lambda: latent

    def events() -> Iterator[Event]:
        yield from result.events
        if result.error is not None:
            raise result.error

    return GenerationRun(events(), state)


def group_jobs(jobs: Sequence[Job], batch_size: int) -> list[list[Job]]:
    """Jobs in groups of up to ``batch_size`` that can be optimised together (same size,
    steps, models, cutouts...), in the order of their first job."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    open_groups: dict[str, list[Job]] = {}
    groups: list[list[Job]] = []
    for job in jobs:
        key = batch_key(job.config)
        group = open_groups.get(key)
        if group is None or len(group) >= batch_size:
            group = open_groups[key] = []
            groups.append(group)
        group.append(job)
    return groups


class Worker:
    """Loads the models once (per set of models asked for) and makes jobs with them.

    Args:
        make_pipeline: builds a pipeline for a :class:`ModelsConfig`.
        device, weights_dir, offline: passed to ``make_pipeline``.
        threads: CPU threads for torch (None: leave them as they are).
    """

    def __init__(self, make_pipeline: PipelineFactory | None = None, *, device: str = "auto",
                 weights_dir: str | None = None, offline: bool | None = None, threads: int | None = None):
        if threads:
            use_threads(threads)
        self._make = make_pipeline or TextToImage.from_workbench
        self._options: dict[str, Any] = dict(device=device, weights_dir=weights_dir, offline=offline)
        self._bench: Workbench | None = None
        self._pipeline: TextToImage | None = None
        self._identity: tuple | None = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.loads = 0  # how many times models were loaded (once, unless jobs ask for other models)

    @classmethod
    def around(cls, pipeline: TextToImage) -> Worker:
        """A worker that uses an already loaded pipeline (the web UI's, a script's)."""
        worker = cls(lambda models, **_: pipeline)
        worker._pipeline, worker._identity = pipeline, pipeline.requested.identity
        return worker

    def pid(self) -> int:
        """This worker's process id."""
        return os.getpid()

    def pipeline(self, models: ModelsConfig) -> TextToImage:
        """The pipeline for ``models``, loaded on first use and kept (one set at a time)."""
        if self._pipeline is None or models.identity not in (self._identity, self._pipeline.models.identity):
            self._pipeline = None  # let the previous models go before loading others
            if self._bench is None:
                self._bench = Workbench(self._options["device"], weights_dir=self._options["weights_dir"],
                                        offline=self._options["offline"])
            self._bench.release(keep=self._bench.upscalers)
            self._pipeline = self._make(models, bench=self._bench)
            self._identity = models.identity
            self.loads += 1
        return self._pipeline

    def run(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Make ``jobs`` (one group of :func:`group_jobs`: together when there are several),
        each failure recorded in its own result. A batch that fails is made again job by job,
        so one bad job does not take the others with it."""
        results = None
        if len(jobs) > 1:
            try:
                results = self._together(jobs)
            except GeneratorError as error:
                logger.info("a batch of %d jobs failed (%s); making them one by one", len(jobs), error)
        results = results or [self._alone(job) for job in jobs]
        for result in results:
            result.loads = self.loads
        return results

    def _alone(self, job: Job) -> JobResult:
        started = time.perf_counter()
        result = JobResult(job.id, bare_state(job.config), worker=self.name)
        run: GenerationRun | None = None
        try:
            pipeline = self.pipeline(job.config.models)
            result.device = str(pipeline.device)
            run = pipeline.run(job.config)
            result.state = run.state
            for event in run:
                if not isinstance(event, Progress):
                    result.events.append(event)
        except Exception as error:  # noqa: BLE001 - every failure is recorded, and the other jobs go on
            result.error = _as_generator_error(error)
            if run is not None:
                run.close()
                result.latest = run.latest_image()
        result.latent = _latent_of(result.state)
        result.state = bare_state(result.state)
        result.seconds = time.perf_counter() - started
        return result

    def _together(self, jobs: Sequence[Job]) -> list[JobResult]:
        started = time.perf_counter()
        pipeline = self.pipeline(jobs[0].config.models)
        batch = pipeline.run_batch([job.config for job in jobs])
        results = [JobResult(job.id, state, worker=self.name, device=str(pipeline.device))
                   for job, state in zip(jobs, batch.states, strict=True)]
        try:
            for index, event in batch:
                if isinstance(event, Progress):
                    continue
                for result in results if index == ALL else [results[index]]:
                    result.events.append(event)
        except Exception as error:
            batch.close()
            raise _as_generator_error(error) from error
        for result in results:
            result.latent = _latent_of(result.state)
            result.state = bare_state(result.state)
            result.seconds = time.perf_counter() - started
        return results


def bare_state(state: RunState | GenerationConfig) -> RunState:
    """A run state without its decoder (which holds the models), to send between processes."""
    if isinstance(state, GenerationConfig):
        return RunState(TEXT_TO_IMAGE.name, state.prompts or "image", state.to_dict(), 0, state.steps)
    return RunState(state.mode, state.label, dict(state.config), state.step, state.total)


def _latent_of(state: RunState) -> Any:
    """The run's latest latent (a CPU tensor), where its state offers one."""
    latent = getattr(state, "latent", None)
    if not callable(latent):
        return None
    try:
        return latent()
    except Exception as error:  # noqa: BLE001 - best effort, as the run driver does
        logger.warning("could not keep the latent to continue from: %s", error)
        return None


def _as_generator_error(error: BaseException) -> GeneratorError:
    if isinstance(error, GeneratorError):
        return error
    logger.exception("a job failed unexpectedly")
    return JobFailed(f"the job failed unexpectedly ({type(error).__name__}: {summary(error)}); the other jobs "
                     "went on; run it alone to see the whole error.")
