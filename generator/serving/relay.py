"""The web UI's jobs through the serving queue (``app.py --ray``): a page's job is submitted to
the same queue as the API's, made by a worker of the pool, and its updates relayed to the page
as if it ran here, so the live preview, the progress bar and Stop work as they do locally.
While it waits, the page shows its place in the queue and an estimate of when it starts.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from generator.config_schema import to_plain
from generator.drive import RunRecord
from generator.errors import GeneratorError
from generator.serving.queue import CANCELLED, DONE, QUEUED, JobQueue, ServedJob
from generator.webui.jobs import Update
from generator.webui.studio import Session

STOP_WAIT_SECONDS = 60.0
"""How long a Stop waits for the worker to keep the job's work before the page goes on."""


class QueueRelay:
    """Sends the web UI's jobs to ``queue`` (its backend: the Ray pool); set as ``Studio.pool``."""

    def __init__(self, queue: JobQueue):
        self.queue = queue

    def warm(self) -> None:
        """Load the models of every worker of the pool now (see :meth:`RayBackend.warm`)."""
        warm = getattr(self.queue.backend, "warm", None)
        if warm is not None:
            warm()

    def relay(self, session: Session, mode: str, config: Any, options: Mapping[str, Any]) -> Iterator[Update]:
        """Submit the job of ``session`` and yield its updates as they come; closing this
        generator (Stop) cancels the job and waits until it kept its work.

        Raises:
            QueueFull: the queue, or this visitor's share of it, is full.
            GeneratorError: the job failed (its sentence).
        """
        owner = f"visitor:{session.owner or 'anonymous'}"
        job = self.queue.submit(owner, mode, to_plain(config), _not_here, dict(options))
        return self._follow(session, job)

    def _follow(self, session: Session, job: ServedJob) -> Iterator[Update]:
        with session.running(device=False):
            try:
                yield from self._updates(job)
                if job.status != DONE:
                    raise GeneratorError(job.message)
                if job.final is not None:
                    yield job.final
            finally:
                if not job.ended_yet:
                    self.queue.cancel(job)
                    _wait(job, STOP_WAIT_SECONDS)
                session.record = _record(job)

    def _updates(self, job: ServedJob) -> Iterator[Update]:
        last, said = -1, 0.0
        while True:
            events = job.events_after(last, 1.0)
            for number, kind, data in events:
                last = number
                if kind == "progress":
                    yield Update(progress=(data["step"], data["total"], data["text"]))
                elif kind == "preview" and job.preview is not None:
                    yield Update(preview=Image.open(io.BytesIO(job.preview)))
                elif kind == "status":
                    yield Update(status=data["text"])
                elif kind == "notice":
                    yield Update(notice=data["text"])
                elif kind == "retried":
                    yield Update(status="its worker stopped; making it again on another…")
            if job.ended_yet and last >= len(job.events) - 1:
                return
            if job.status == QUEUED and time.monotonic() - said >= 1.0:
                said = time.monotonic()
                yield Update(status=waiting_text(self.queue.position(job), self.queue.eta(job)))


def waiting_text(position: int | None, eta: float | None) -> str:
    """``waiting in the queue: 2 jobs before yours · about 1:30``."""
    ahead = "yours is next" if not position else f"{position} job{'s' if position != 1 else ''} before yours"
    text = f"waiting in the queue: {ahead}"
    if eta is not None:
        minutes, seconds = divmod(int(eta + 0.5), 60)
        text += f" · done in about {minutes}:{seconds:02d}"
    return text


def _not_here(session: Session) -> Iterator[Update]:
    raise GeneratorError("this server sends its jobs to its pool of workers; none runs in the web server itself.")


def _wait(job: ServedJob, seconds: float) -> None:
    ends = time.monotonic() + seconds
    while not job.ended_yet and time.monotonic() < ends:
        job.events_after(len(job.events) - 1, 0.5)


def _record(job: ServedJob) -> RunRecord | None:
    """What the page needs of the job after it ended (the result to show, Continue, Stop)."""
    if job.folder is None and job.result is None:
        return None
    status = "done" if job.status == DONE else "stopped" if job.status == CANCELLED else "failed"
    files = [Path(path) for path in job.files]
    record = RunRecord(job.mode, status=status, folder=Path(job.folder) if job.folder else None,
                       result=Path(job.result) if job.result else None, files=files, step=job.step, total=job.total)
    record.error = job.message if status == "failed" else None
    return record
