"""The batch folder's record, ``batch.jsonl``: one line per job that ended, appended as it ends.

Each line holds the job's id, where it came from, its fingerprint, its config, its status
(``done`` or ``failed`` with its one-sentence error), its run folder and its timings. The
last line of a job wins, so a rerun reads which jobs are done (skipped) and which failed
(skipped too, unless retried). A line cut short by a crash is ignored.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generator.errors import OutputError
from generator.io.atomic_files import output_error

logger = logging.getLogger(__name__)

RECORD_FILE = "batch.jsonl"


@dataclass
class JobRecord:
    """One line of ``batch.jsonl``.

    Attributes:
        id: the job's id (``<line>.<k>``).
        source: ``prompts.txt line 3``.
        fingerprint: what the job asked for (see :class:`~generator.batch.jobs.Job`).
        status: ``done`` or ``failed``.
        prompt, seed: for people reading the file.
        config: the resolved config of the run.
        error: the one-sentence error of a failed job.
        folder: its run folder, relative to the batch folder (None if nothing was written).
        timings: the run's timings, plus ``worker_seconds``.
        worker: ``host:pid`` of the worker that made it.
        device: the device it was made on.
        attempts: how many times it was started.
    """

    id: str
    source: str
    fingerprint: str
    status: str
    prompt: str = ""
    seed: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    folder: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    device: str = ""
    attempts: int = 1


class BatchRecords:
    """``batch.jsonl`` of a batch folder: read once, appended one line per finished job."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / RECORD_FILE
        self.latest: dict[str, JobRecord] = {}
        for record in self._read():
            self.latest[record.id] = record

    def _read(self) -> Iterable[JobRecord]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            raise OutputError(f"{self.path} cannot be read ({error}); move it away to start the batch afresh.") \
                from None
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(JobRecord(**json.loads(line)))
            except (ValueError, TypeError):
                logger.warning("ignoring line %d of %s, which is not a job record (cut short by a crash?)",
                               number, self.path)
        return records

    def find(self, job_id: str, fingerprint: str) -> JobRecord | None:
        """The latest record of this job, if it asked for the same settings."""
        record = self.latest.get(job_id)
        return record if record is not None and record.fingerprint == fingerprint else None

    def append(self, record: JobRecord) -> None:
        """Add a line (written and flushed to disk before returning)."""
        line = json.dumps(asdict(record), sort_keys=True, ensure_ascii=False) + "\n"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as handle:
                if handle.tell() > 0:  # a line cut short by a crash stays on a line of its own
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        line = "\n" + line
                handle.write(line.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise output_error(error, self.path, self.folder) from error
        self.latest[record.id] = record
