"""A pool of Ray actors that make served jobs: one per GPU (or per group of CPU threads), each
loading its models once and keeping them warm (``app.py --ray [ADDRESS]``).

Each actor (:class:`PoolWorker`) holds a :class:`~generator.webui.studio.Studio` of its own on
its device and runs a mode's served job (:attr:`generator.mode.Mode.job`, the same generator
the web UI runs locally) from the job's mode, plain config and inputs, writing the run folder
into the shared outputs folder (the actors must see it: one machine, or a shared disk). Its
updates stream back through a Ray streaming generator as they happen (previews as PNG bytes),
so the live preview and the progress work as they do locally. A cancel is a second call on
the actor (it runs two calls at once), seen by the job at its next step, which keeps its work.
An actor that dies mid-job (a crash, a killed process, a lost machine) is restarted by Ray and
its job made once more from the start, its partial folder removed: retried once, written once;
a second death fails the job with a sentence.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from generator import modes
from generator.batch.ray_runner import connect, import_ray, plan_actors
from generator.config import ModelsConfig
from generator.config_schema import build_config
from generator.devices import use_threads
from generator.errors import GeneratorError, summary
from generator.serving.queue import UNEXPECTED, Cancelled, ServedJob, kept_files, peak_memory, reset_peak_memory
from generator.webui.jobs import Update
from generator.webui.studio import Session, Studio

logger = logging.getLogger(__name__)

ATTEMPTS = 2
"""A job is started at most this often: once, and once more after its worker died."""
ACTOR_RESTARTS = 4
"""How many times Ray restarts a dead actor before it is given up."""

StudioFactory = Callable[..., Studio]
"""``make(outputs_dir=..., models=..., device=..., weights_dir=..., offline=..., state_dir=...)`` ->
the studio of one actor (a module-level function, importable by the workers; tests pass tiny
models)."""


@dataclass(frozen=True)
class PoolSettings:
    """What every actor's studio is built from."""

    outputs_dir: str
    models: dict[str, Any]
    device: str = "auto"
    weights_dir: str | None = None
    offline: bool | None = None
    state_dir: str | None = None


def default_studio(*, outputs_dir: str, models: Mapping[str, Any], device: str, weights_dir: str | None,
                   offline: bool | None, state_dir: str | None) -> Studio:
    """An actor's studio: the server's models on the actor's device (loaded on its first job)."""
    return Studio(outputs_dir=Path(outputs_dir), models=build_config(ModelsConfig, models), device=device,
                  weights_dir=weights_dir, offline=offline, state_dir=Path(state_dir) if state_dir else None)


class PoolWorker:
    """One actor of the pool: a studio of its own, one job at a time, cancellable.

    Args:
        settings: the outputs folder, models and device of its studio.
        make_studio: builds the studio (default :func:`default_studio`).
        threads: CPU threads for torch (None: leave them).
    """

    def __init__(self, settings: PoolSettings, make_studio: StudioFactory | None = None,
                 threads: int | None = None):
        if threads:
            use_threads(threads)
        self.studio = (make_studio or default_studio)(
            outputs_dir=settings.outputs_dir, models=settings.models, device=settings.device,
            weights_dir=settings.weights_dir, offline=settings.offline, state_dir=settings.state_dir)
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    def pid(self) -> int:
        """This worker's process id."""
        return os.getpid()

    def warm(self) -> str | None:
        """Load the studio's text-to-image models now (not on the first job); the sentence of
        a failed load, or None."""
        try:
            self.studio.text_to_image_for(self.studio.models)
        except GeneratorError as error:
            return str(error)
        return None

    def cancel(self, job_id: str) -> None:
        """Ask the job ``job_id`` to stop at its next step."""
        with self._lock:
            self._cancelled.add(job_id)

    def run(self, job_id: str, mode_name: str, plain: dict[str, Any], inputs: dict[str, Any],
            owner: str) -> Iterator[dict[str, Any]]:
        """Make a job, yielding its updates as plain dicts (a preview as PNG bytes); the last one
        says how it ended (``end``: done, cancelled or failed, with ``error``)."""
        session = Session(key=f"api:{job_id}", owner=owner)
        folder = None
        ending: dict[str, Any] = {"end": "done"}
        reset_peak_memory()
        try:
            mode = modes.get(mode_name)
            config = build_config(mode.config, plain)
            updates = mode.function("job")(self.studio, config, session, **inputs)
            with contextlib.closing(updates):
                for update in updates:
                    record = session.record
                    if record is not None and record.folder is not None and str(record.folder) != folder:
                        folder = str(record.folder)
                        yield {"folder": folder}
                    yield _plain(update)
                    if job_id in self._cancelled:
                        ending = {"end": "cancelled"}
                        break
        except GeneratorError as error:
            ending = {"end": "failed", "error": str(error)}
        except Exception:  # noqa: BLE001 - the worker lives on; the client gets a sentence, the log the rest
            logger.exception("the job %s failed on a Ray worker", job_id)
            ending = {"end": "failed", "error": UNEXPECTED}
        finally:
            with self._lock:
                self._cancelled.discard(job_id)
        folder, result, files = kept_files(session)
        yield {**ending, "result": result, "files": files, "folder": folder, "peak_memory": peak_memory()}


def _plain(update: Update) -> dict[str, Any]:
    """An update as a plain dict, its preview image as PNG bytes."""
    plain = {name: value for name, value in vars(update).items() if value is not None and name != "preview"}
    if update.preview is not None:
        buffer = io.BytesIO()
        update.preview.save(buffer, format="PNG")
        plain["preview"] = buffer.getvalue()
    return plain


def _update(plain: Mapping[str, Any]) -> Update:
    """The update a worker sent (see :func:`_plain`)."""
    values = dict(plain)
    if "preview" in values:
        values["preview"] = Image.open(io.BytesIO(values["preview"]))
    if values.get("progress") is not None:
        values["progress"] = tuple(values["progress"])
    return Update(**{name: value for name, value in values.items() if name in Update.__dataclass_fields__})


class RayBackend:
    """The serving queue's backend over a Ray pool of :class:`PoolWorker` actors.

    Args:
        address: ``local`` (or None) to start Ray here, or a cluster's address.
        settings: every actor's studio (the outputs folder must be shared with them).
        make_studio: builds each actor's studio (module-level; default :func:`default_studio`).
        workers: at most this many actors (default: one per GPU, else one per ``threads`` CPUs).
        threads: CPU threads per actor without GPUs.
    """

    def __init__(self, address: str | None, settings: PoolSettings, *, make_studio: StudioFactory | None = None,
                 workers: int | None = None, threads: int | None = None):
        self.ray = ray = import_ray()
        self._started = connect(address)
        count, options, threads = plan_actors(ray, address, workers=workers, threads=threads)
        remote = ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=0, max_concurrency=2)(PoolWorker)
        self.actors = [remote.options(**options).remote(settings, make_studio, threads) for _ in range(count)]
        self.pids = ray.get([actor.pid.remote() for actor in self.actors])
        self.slots = count
        self.threads = threads
        logger.info("%d Ray worker%s for the queue (%s)", count, "s" if count != 1 else "",
                    f"{threads} CPU thread{'s' if threads != 1 else ''} each" if threads else "one GPU each")

    def run(self, slot: int, job: ServedJob) -> Iterator[Update]:
        """Make ``job`` on the actor of ``slot``, its updates streamed back as they happen."""
        from ray.exceptions import RayActorError

        for attempt in range(1, ATTEMPTS + 1):
            actor = self.actors[slot]
            folder = None
            try:
                stream = actor.run.options(num_returns="streaming").remote(job.id, job.mode, job.config, job.inputs,
                                                                           job.owner)
                yield from self._follow(actor, job, stream, attempt)
                return
            except RayActorError as error:
                folder = job.folder
                job.folder = None
                if attempt == ATTEMPTS:
                    raise JobLost(f"its Ray worker died {attempt} times while making it ({summary(error)}); "
                                  "submit it again, alone, to see why (out of memory?).") from None
                logger.warning("the Ray worker of job %s died (%s); making it again", job.id, summary(error))
                job.tell("retried", attempt=attempt + 1)
                if folder and Path(folder).is_dir():  # the dead attempt's partial run folder: written once
                    shutil.rmtree(folder, ignore_errors=True)
                self.pids[slot] = self.ray.get(actor.pid.options(max_task_retries=-1).remote())  # restarted by Ray

    def _follow(self, actor: Any, job: ServedJob, stream: Any, attempt: int) -> Iterator[Update]:
        cancel_sent = False
        for ref in stream:
            plain = self.ray.get(ref)
            if job.cancel_asked.is_set() and not cancel_sent:
                actor.cancel.remote(job.id)
                cancel_sent = True
            if "folder" in plain and "end" not in plain:
                job.folder = plain["folder"]
                continue
            if "end" in plain:
                job.folder = plain.get("folder") or job.folder
                job.peak_memory = plain.get("peak_memory")
                if plain["end"] != "done":
                    job.result, job.files = plain.get("result") or job.result, plain.get("files") or job.files
                if plain["end"] == "cancelled":
                    raise Cancelled
                if plain["end"] == "failed":
                    raise GeneratorError(plain.get("error") or UNEXPECTED)
                return
            yield _update(plain)

    def warm(self) -> None:
        """Load every worker's models now, so the first jobs find them warm.

        Raises:
            GeneratorError: a worker could not load them (its sentence).
        """
        for failure in self.ray.get([actor.warm.remote() for actor in self.actors]):
            if failure:
                raise GeneratorError(failure)

    def close(self) -> None:
        """Stop the actors (and the local Ray this backend started)."""
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self.actors = []
        if self._started:
            self.ray.shutdown()
            self._started = False


class JobLost(GeneratorError):
    """A job whose Ray worker died every time it was started."""
