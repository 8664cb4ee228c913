"""The queue that HTTP API jobs wait in, and the workers that make them.

A job is a mode's served job (:attr:`generator.mode.Mode.job`: the same generator of
:class:`~generator.webui.jobs.Update` s the web UI runs), made by one of ``workers`` threads
in this process while holding the studio's GPU lock (:attr:`generator.webui.studio.Studio.gpu`),
which the web UI's jobs hold too: one job at a time on the device, whichever front end sent it.
Everything a job tells is kept on its :class:`ServedJob` (status, progress, the latest preview
as PNG, its files) and appended to its event list, which the API streams (Server-Sent Events).

A cancel is seen within a step: the job is closed at its next update, which keeps its work as
the web UI's Stop does. Limits protect a shared server: the jobs waiting or running in all
(``max_queue``) and per identity (``max_per_owner``). Each job ends with one structured log
line (who, mode, status, seconds waited and run, peak memory).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import resource
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from generator.errors import GeneratorError
from generator.webui.jobs import Update, kept_update
from generator.webui.studio import Session

logger = logging.getLogger(__name__)
job_log = logging.getLogger("generator.serving.jobs")
"""One JSON line per finished job."""

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ENDED = (DONE, FAILED, CANCELLED)
UNEXPECTED = "something went wrong on the server (its log has the details); check the values and try again."
JobFactory = Callable[[Session], Iterator[Update]]
"""Makes a job's update generator for the session it runs in."""


class QueueFull(GeneratorError):
    """The server's queue (or this identity's share of it) is full."""


@dataclass
class ServedJob:
    """A job of the API, as its owner sees it.

    Attributes:
        id: a random id (a UUID's hex).
        owner: the identity that submitted it (an API key's name, ``local``).
        mode: the mode's name.
        config: the plain config it was given (checked).
        status: ``queued``, ``running``, then ``done``, ``failed`` or ``cancelled``.
        step, total, text: its latest progress.
        message: its latest status sentence, or its error.
        preview: its latest preview as PNG bytes (None before the first).
        previews: how many previews it has shown.
        result: its main file (a path on the server), files: every file it made.
        events: ``(number, kind, data)`` in order: what the API streams.
    """

    id: str
    owner: str
    mode: str
    config: dict[str, Any]
    make: JobFactory = field(repr=False)
    inputs: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    status: str = QUEUED
    step: int = 0
    total: int = 0
    text: str = ""
    message: str = ""
    preview: bytes | None = field(default=None, repr=False)
    previews: int = 0
    result: str | None = None
    files: list[str] = field(default_factory=list)
    folder: str | None = None
    seed: int | None = None
    slot: int | None = None
    final: Update | None = field(default=None, repr=False)
    peak_memory: int | None = None
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list, repr=False)
    cancel_asked: threading.Event = field(default_factory=threading.Event, repr=False)
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def ended_yet(self) -> bool:
        return self.status in ENDED

    def tell(self, kind: str, **data: Any) -> None:
        """Append an event and wake whoever waits for one."""
        with self.changed:
            self.events.append((len(self.events), kind, data))
            self.changed.notify_all()

    def events_after(self, number: int, timeout: float) -> list[tuple[int, str, dict[str, Any]]]:
        """The events after ``number`` (-1: all), waiting up to ``timeout`` seconds for one."""
        with self.changed:
            if len(self.events) <= number + 1 and not self.ended_yet:
                self.changed.wait(timeout)
            return self.events[number + 1:]


class JobQueue:
    """Jobs in order of submission, made by one thread per slot of the backend.

    Args:
        gpu: the lock every job on the device holds (the studio's, shared with the web UI), for
            the default backend (:class:`LocalBackend`).
        backend: where jobs are made (default: in this process, one at a time).
        max_queue: jobs waiting or running at most, all identities together.
        max_per_owner: jobs waiting or running at most per identity.
        keep: finished jobs remembered (the oldest are forgotten; their files stay).
    """

    def __init__(self, gpu: threading.Lock | None = None, *, backend: Backend | None = None, max_queue: int = 32,
                 max_per_owner: int = 4, keep: int = 500):
        if max_queue < 1 or max_per_owner < 1:
            raise ValueError("max_queue and max_per_owner must be 1 or more")
        self.backend = backend or LocalBackend(gpu or threading.Lock())
        self.workers = self.backend.slots
        self.max_queue = max_queue
        self.max_per_owner = max_per_owner
        self.keep = keep
        self._jobs: OrderedDict[str, ServedJob] = OrderedDict()
        self._waiting: deque[ServedJob] = deque()
        self._lock = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._seconds: deque[float] = deque(maxlen=20)  # how long recent jobs ran, for the ETA
        self._closed = False

    # -- submitting and finding ------------------------------------------------------------

    def submit(self, owner: str, mode: str, config: dict[str, Any], make: JobFactory,
               inputs: dict[str, str] | None = None) -> ServedJob:
        """Queue a job of ``owner``: ``make`` makes it in this process; a remote backend makes
        it from ``mode``, ``config`` and ``inputs`` (the files it takes, by name) instead.

        Raises:
            QueueFull: the queue, or this owner's share of it, is full (the sentence says which).
        """
        with self._lock:
            active = [job for job in self._jobs.values() if not job.ended_yet]
            if len(active) >= self.max_queue:
                raise QueueFull(f"the server's queue is full ({self.max_queue} jobs); try again in a few minutes.")
            mine = sum(1 for job in active if job.owner == owner)
            if mine >= self.max_per_owner:
                raise QueueFull(f"you have {mine} jobs waiting or running, the most this server allows; wait for "
                                "one to end or cancel one.")
            job = ServedJob(uuid.uuid4().hex, owner, mode, config, make, dict(inputs or {}))
            job.tell("queued", position=len(self._waiting))  # before a worker can take it and say "started"
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._forget_old()
            self._start_workers()
            self._lock.notify_all()
        return job

    def get(self, owner: str, job_id: str) -> ServedJob | None:
        """The job ``job_id`` if ``owner`` submitted it (None otherwise: another's job is not there)."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def jobs_of(self, owner: str) -> list[ServedJob]:
        """The jobs of ``owner``, oldest first."""
        return [job for job in list(self._jobs.values()) if job.owner == owner]

    def cancel(self, job: ServedJob) -> None:
        """Cancel a job: a waiting one ends now, a running one at its next step (keeping its work)."""
        with self._lock:
            job.cancel_asked.set()
            if job.status == QUEUED:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(job)
                self._end(job, CANCELLED, "cancelled before it started.")
                return
        with job.changed:
            job.changed.notify_all()

    def position(self, job: ServedJob) -> int | None:
        """How many jobs wait before ``job`` (0: it is next), or None once it started."""
        with self._lock:
            if job.status != QUEUED:
                return None
            try:
                return list(self._waiting).index(job)
            except ValueError:
                return 0  # taken by a worker, waiting for the device

    def eta(self, job: ServedJob) -> float | None:
        """Seconds until ``job`` ends, estimated from its progress and the recent jobs' times
        (None while nothing is known)."""
        if job.ended_yet:
            return 0.0
        typical = sum(self._seconds) / len(self._seconds) if self._seconds else None
        if job.status == RUNNING:
            return _remaining(job) if job.step else typical
        position = self.position(job)
        if typical is None or position is None:
            return None
        running = [_remaining(j) or typical for j in self._jobs.values() if j.status == RUNNING]
        ahead = sum(running) + position * typical
        return (ahead / self.workers) + typical

    def counts(self) -> dict[str, int]:
        """Jobs waiting and running now, and workers."""
        statuses = [job.status for job in list(self._jobs.values())]
        return {"queued": statuses.count(QUEUED), "running": statuses.count(RUNNING), "workers": self.workers}

    def close(self, timeout: float = 30) -> None:
        """Cancel every job, stop the workers and wait for them (up to ``timeout`` seconds)."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
            self._lock.notify_all()
        for job in jobs:
            if not job.ended_yet:
                self.cancel(job)
        for thread in self._threads:
            thread.join(timeout)
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    # -- the workers ---------------------------------------------------------------------------

    def _start_workers(self) -> None:
        while len(self._threads) < self.workers:
            slot = len(self._threads)
            thread = threading.Thread(target=self._work, args=(slot,), name=f"api-worker-{slot}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _next(self) -> ServedJob | None:
        with self._lock:
            while not self._waiting and not self._closed:
                self._lock.wait()
            return None if self._closed else self._waiting.popleft()

    def _work(self, slot: int) -> None:
        while (job := self._next()) is not None:
            try:
                self._run(slot, job)
            except Exception:  # noqa: BLE001 - a worker never dies with a job: the job fails instead
                logger.exception("the job %s failed", job.id)
                if not job.ended_yet:
                    self._end(job, FAILED, UNEXPECTED)

    def _run(self, slot: int, job: ServedJob) -> None:
        status, message = DONE, "done."
        job.slot = slot
        try:
            for update in self.backend.run(slot, job):
                if job.status == QUEUED:
                    job.status, job.started = RUNNING, time.time()
                    job.tell("started")
                self._take(job, update)
        except Cancelled:
            status = CANCELLED
            message = "cancelled; what it made so far is kept." if job.started else "cancelled before it started."
        except GeneratorError as error:
            status, message = FAILED, str(error)
        except Exception:  # noqa: BLE001 - never a Python message to a client: the log has it
            logger.exception("the job %s failed", job.id)
            status, message = FAILED, UNEXPECTED
        self._end(job, status, message)

    def _take(self, job: ServedJob, update: Update) -> None:
        """Keep what an update tells on the job and stream it."""
        if update.progress is not None:
            job.step, job.total, job.text = update.progress
            job.tell("progress", step=job.step, total=job.total, text=job.text)
        if update.preview is not None:
            buffer = io.BytesIO()
            update.preview.save(buffer, format="PNG")
            job.preview = buffer.getvalue()
            job.previews += 1
            job.tell("preview", number=job.previews, step=job.step)
        if update.status is not None:
            job.message = update.status
            job.tell("status", text=update.status)
        if update.notice:
            job.tell("notice", text=update.notice)
        if update.result is not None:
            job.result, job.final = update.result, update
        if update.seed is not None:
            job.seed = update.seed
        files = update.files or update.results
        if files:
            job.files = list(dict.fromkeys([*([update.result] if update.result else []), *files]))

    def _end(self, job: ServedJob, status: str, message: str) -> None:
        job.status, job.message, job.ended = status, message, time.time()
        if status == DONE and job.started is not None:
            self._seconds.append(job.ended - job.started)
        job.tell(status, message=message, files=len(job.files))
        job_log.info(json.dumps({
            "job": job.id, "who": job.owner, "mode": job.mode, "status": status,
            "waited_seconds": round((job.started or job.ended) - job.created, 3),
            "run_seconds": round(job.ended - job.started, 3) if job.started else 0.0,
            "steps": job.step, "peak_memory_bytes": job.peak_memory, "error": message if status == FAILED else None,
        }, sort_keys=True))

    def _forget_old(self) -> None:
        ended = [job_id for job_id, job in self._jobs.items() if job.ended_yet]
        for job_id in ended[:max(0, len(ended) - self.keep)]:
            del self._jobs[job_id]


class Cancelled(Exception):  # noqa: N818 - a job's end, not an error
    """A backend stopped a job because its cancel was asked (its work so far is kept on the job)."""


class Backend(Protocol):
    """Where a queue's jobs are made: ``slots`` at once; ``run`` yields a job's updates (the
    first once it started), keeps what a stopped or failed job made on the job (``result``,
    ``files``, ``folder``, ``peak_memory``), raises :class:`Cancelled` when it stopped for a
    cancel (seen within a step) and the job's :class:`GeneratorError` when it failed."""

    slots: int

    def run(self, slot: int, job: ServedJob) -> Iterator[Update]: ...


class LocalBackend:
    """Jobs made in this process, one at a time, holding the studio's GPU lock (``gpu``) while
    each runs, so that the web UI's jobs and these take turns on the device."""

    slots = 1

    def __init__(self, gpu: threading.Lock):
        self.gpu = gpu

    def run(self, slot: int, job: ServedJob) -> Iterator[Update]:
        while not self.gpu.acquire(timeout=0.2):  # waiting for the device, cancellable
            if job.cancel_asked.is_set():
                raise Cancelled
        try:
            if job.cancel_asked.is_set():
                raise Cancelled
            yield Update(status="starting…")
            reset_peak_memory()
            session = Session(key=f"api:{job.id}", owner=job.owner)
            try:
                updates = job.make(session)
                with contextlib.closing(updates):
                    for update in updates:
                        yield update
                        if job.cancel_asked.is_set():
                            raise Cancelled
            finally:
                keep(job, session)
                job.peak_memory = peak_memory()
        finally:
            self.gpu.release()


def keep(job: ServedJob, session: Session) -> None:
    """Keep on ``job`` the folder of the run its session made and, for a run that did not
    finish, what it kept (its latest image)."""
    folder, result, files = kept_files(session)
    job.folder = folder or job.folder
    job.result, job.files = result or job.result, files or job.files


def kept_files(session: Session) -> tuple[str | None, str | None, list[str]]:
    """(the run folder of the session's latest run, and for a run that did not finish its kept
    main image and files; None and [] where there are none)."""
    record = session.record
    if record is None or record.folder is None:
        return None, None, []
    if record.status not in ("stopped", "failed"):
        return str(record.folder), None, []
    kept = kept_update(record)
    return str(record.folder), kept.result, list(kept.files or [])


def _remaining(job: ServedJob) -> float | None:
    if not job.step or not job.total or job.started is None:
        return None
    elapsed = time.time() - job.started
    return elapsed / job.step * max(0, job.total - job.step)


def reset_peak_memory() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> int:
    """The peak device memory of the job on a GPU, or the process's peak resident memory."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
