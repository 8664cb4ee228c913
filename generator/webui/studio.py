"""The models behind the web UI: loaded on first use, shared by every browser session.

The Gradio queue runs one heavy job at a time (one GPU), so a Studio never loads models
concurrently; switching to other models (another preset's CLIP ensemble, another prior)
loads them while the previous ones stay loaded (waiting on the CPU, on a GPU) and drops
the previous ones only once the new ones loaded: a failed load (a missing or broken file)
leaves the models other sessions use loaded and working. On a GPU the text-to-image models and the
prior's are not kept there together: the set a job does not use waits in the computer's
memory and comes back when a job needs it (a second or two, instead of loading again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from generator.config import ModelsConfig
from generator.devices import pick_device
from generator.drive import RunRecord
from generator.sample.loader import Prior, transformer_registry_name
from generator.sample.pipeline import Sampler
from generator.text_to_image.pipeline import TextToImage
from generator.upscale.loader import Upscaler
from generator.webui.gallery import PastRun, list_runs
from generator.webui.owners import OwnersIndex
from generator.webui.visitors import ServedFiles, visitor_of
from generator.workbench import Workbench

logger = logging.getLogger(__name__)


def _idle() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class Session:
    """What the Stop and "use the latest result" buttons need to know about a browser session.

    ``record`` tells what became of the latest job (its folder and main image, also after a
    Stop); ``finished`` is set whenever no job of this session is running; ``owner`` is the
    visitor id whose runs these are (:func:`generator.webui.visitors.visitor_of`; empty for a
    request without the visitor cookie, whose runs belong to nobody).
    """

    record: RunRecord | None = None
    finished: threading.Event = field(default_factory=_idle)
    claimed: bool = False
    owner: str = ""  # the visitor id: whose runs these are
    key: str = "default"  # the visitor id and Gradio's session hash
    gpu: threading.Lock | None = field(default=None, repr=False)  # held while a job runs (the studio's)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def claim(self) -> bool:
        """Reserve this session for one run (a click, Enter, Ctrl+Enter): False while a run of
        this session is claimed or running, so two submissions never start two runs. The
        reservation ends with the run (:meth:`running`) or with :meth:`release`."""
        with self._lock:
            if self.claimed or not self.finished.is_set():
                return False
            self.claimed = True
            return True

    def release(self) -> None:
        """Drop a reservation whose run never started (stopped while it waited in the queue)."""
        with self._lock:
            self.claimed = False

    @property
    def folder(self) -> Path | None:
        """The run folder of the latest job (None until it wrote something)."""
        return self.record.folder if self.record is not None else None

    @property
    def result(self) -> Path | None:
        """The main image of the latest job (None until there is one)."""
        return self.record.result if self.record is not None else None

    @contextlib.contextmanager
    def running(self, device: bool = True) -> Iterator[Session]:
        """Mark a job as running until it ends, however it ends (done, error or Stop), holding
        the studio's GPU lock (:attr:`gpu`, when set, and ``device``: the job runs here)
        meanwhile: one job at a time on the device, whether the web UI or the HTTP API sent it."""
        self.finished.clear()
        self.record = None
        try:
            with self.gpu if self.gpu is not None and device else contextlib.nullcontext():
                yield self
        finally:
            self.claimed = False
            self.finished.set()


@dataclass
class Studio:
    """Loaded (or loadable) models and where outputs go.

    Args:
        outputs_dir: run folders are created here; the server serves files from here only.
        models: the text-to-image models used unless a run asks for others.
        text_to_image, sampler: already-loaded pipelines (tests pass tiny ones).
        bench: the workbench that owns every model of the server (default: one on ``device``
            with ``weights_dir`` and ``offline``); each model is loaded once and shared by the
            pipelines and the Upscale tab.
        shared_gallery: every visitor's gallery shows every run (``--shared-gallery``);
            otherwise each visitor sees its own (see :meth:`runs_for`).
        gpu: held by every job while it runs (see :meth:`Session.running`): the web UI's and
            the HTTP API's jobs take turns on the device.
        pool: where the web UI's jobs are sent instead of running here (``app.py --ray``: a
            :class:`generator.serving.relay.QueueRelay`); None: they run on :attr:`device`.
        state_dir: where the owners index lives (default: the outputs folder's hidden sibling,
            see :func:`generator.webui.owners.default_state_dir`); never served.
    """

    outputs_dir: Path
    models: ModelsConfig = field(default_factory=ModelsConfig)
    device: torch.device | None = None
    weights_dir: str | os.PathLike[str] | None = None
    offline: bool | None = None
    text_to_image: TextToImage | None = None
    sampler: Sampler | None = None
    bench: Workbench | None = None
    sessions: dict[str, Session] = field(default_factory=dict)
    shared_gallery: bool = False
    state_dir: Path | None = None
    served: ServedFiles = field(default_factory=ServedFiles)
    gpu: threading.Lock = field(default_factory=threading.Lock, repr=False)
    pool: Any = None

    def __post_init__(self) -> None:
        self.outputs_dir = Path(self.outputs_dir)
        self.owners = OwnersIndex(self.outputs_dir, self.state_dir)
        self.state_dir = self.owners.state_dir
        if self.text_to_image is not None:
            self.models = self.text_to_image.models
            self.device = self.device or self.text_to_image.device
        self.device = pick_device(self.device) if self.device is None or isinstance(self.device, str) else self.device
        if self.bench is None:
            known = self.text_to_image.bench if self.text_to_image is not None else None
            self.bench = known or Workbench(self.device, weights_dir=self.weights_dir, offline=self.offline)

    def session(self, request: Any = None) -> Session:
        """The state of one page (or API client session) of one visitor, created on first use:
        keyed by the visitor's id and Gradio's session hash together, so a session hash alone
        (which travels in the clear) never reaches another visitor's session."""
        visitor = visitor_of(request)
        key = f"{visitor or 'anonymous'}:{getattr(request, 'session_hash', None) or 'default'}"
        return self.sessions.setdefault(key, Session(key=key, owner=visitor, gpu=self.gpu))

    def may_read(self, request: Any = None) -> Callable[[Path], bool]:
        """Whether the visitor of ``request`` may use a server file (resolved path) as an input:
        one it uploaded or was sent, or a file of one of its runs (any run with a shared gallery)."""
        visitor = visitor_of(request)

        def allowed(path: Path) -> bool:
            if self.served.allows(visitor, path):
                return True
            outputs = Path(os.path.realpath(self.outputs_dir))
            if not visitor or not path.is_relative_to(outputs) or path == outputs:
                return False
            folder = path.relative_to(outputs).parts[0]
            return self.shared_gallery or self.owners.owner(folder) == visitor

        return allowed

    def text_to_image_for(self, models: ModelsConfig) -> TextToImage:
        """The text-to-image pipeline for ``models``, loading it (and dropping another) if needed,
        on the device, with the prior's models moved off a GPU."""
        if self.sampler is not None:
            self._park(self.sampler.prior)
        current = self.text_to_image
        if current is not None and models.identity in (current.models.identity, current.requested.identity):
            return current.to(self.device)
        logger.info("loading models for %s", models.vqgan)
        with self._replacing(current):
            self.text_to_image = TextToImage.from_workbench(models, self.bench)
        return self.text_to_image

    def sampler_for(self, model: str, transformer_config: str | None = None) -> Sampler:
        """The Sampler for a prior, loading it (and dropping another) if needed, on the device,
        with the text-to-image models moved off a GPU."""
        if self.text_to_image is not None:
            self._park(self.text_to_image)
        current = self.sampler
        if current is not None and current.model in (model, transformer_registry_name(model)) \
                and current.transformer_config == transformer_config:
            current.prior.to(self.device)
            return current
        with self._replacing(current.prior if current is not None else None):
            self.sampler = Sampler.from_workbench(model, transformer_config, self.bench)
        return self.sampler

    def upscaler(self, name: str, denoise: float | None = None) -> Upscaler:
        """The upscaler of the Upscale tab: the workbench's, the same one the pipelines use."""
        return self.bench.upscaler(name, denoise)

    def runs_for(self, owner: str | None, limit: int = 60) -> list[PastRun]:
        """The gallery of the visitor ``owner``: its own runs (none without an id), or every run
        (also the command line's) when the gallery is shared (:attr:`shared_gallery`)."""
        if not self.shared_gallery and not owner:
            return []
        return list_runs(self.outputs_dir, limit=limit, owner=None if self.shared_gallery else owner,
                         owners=self.owners)

    @contextlib.contextmanager
    def _replacing(self, models: TextToImage | Prior | None) -> Iterator[None]:
        """Load other models in the block while ``models`` (the ones in use) stay loaded: on a
        GPU they wait on the CPU meanwhile. A failed load leaves them loaded and back on the
        device, so the sessions using them are not affected; they are dropped only when the
        block succeeded (it assigned their replacement)."""
        if models is not None:
            self._park(models)
        try:
            yield
        except BaseException:
            if models is not None and self.device.type == "cuda":
                _free(self.device)
                models.to(self.device)
            raise
        del models  # the last reference here: the replaced models can be let go
        self.bench.release(keep=self._in_use())

    def _in_use(self) -> list[Any]:
        """The models the current pipelines hold (upscalers are kept: small, shared by all)."""
        held: list[Any] = list(self.bench.upscalers)
        if self.text_to_image is not None:
            held += [self.text_to_image.vqgan, *self.text_to_image.clips]
            if self.text_to_image.prior is not None:
                held.append(self.text_to_image.prior)
        if self.sampler is not None:
            held.append(self.sampler.prior)
        return held

    def _park(self, models: TextToImage | Prior) -> None:
        """On a GPU, move ``models`` to the CPU (still loaded) and give their GPU memory back."""
        if self.device.type == "cuda":
            models.to("cpu")
            _free(self.device)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
