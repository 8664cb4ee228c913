"""What every tab shares: the studio and path policy, how events are queued, and the
handlers that begin a run (a claim), end it (Stop) and explain a model menu's choice."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from generator.errors import GeneratorError, InputError
from generator.webui.catalogue import model_hint
from generator.webui.forms import from_form
from generator.webui.handlers import guarded
from generator.webui.jobs import generation_info, kept_update
from generator.webui.paths import MayRead, PathPolicy
from generator.webui.status import hint_html, message_html
from generator.webui.studio import Studio

GPU = "gpu"  # every heavy event shares one queue slot: one job at a time on the GPU
HEAVY = dict(concurrency_id=GPU, concurrency_limit=1, show_progress="hidden")
"""Event options of a run: queued, one at a time on the GPU."""
QUICK = dict(queue=False, show_progress="hidden")
"""Event options of a quick handler that loads nothing heavy."""
# Claims go through the queue (so a refused one is an event error, never an HTTP 500) in
# their own group, which never waits for the GPU.
CLAIMING = dict(concurrency_id="claims", concurrency_limit=None, show_progress="hidden", api_name=False)
"""Event options of a run's claim (see :meth:`Page.claimed`)."""


@dataclasses.dataclass
class ImageSender:
    """A button that sends an image its tab shows to the tab that takes images ("Edit this image").

    Attributes:
        button: the button.
        image: the widget whose image it sends (its value a file path).
        status: where a refusal is said.
    """

    button: gr.Button
    image: gr.components.Component
    status: gr.HTML


Loaded = Callable[[dict[str, Any], MayRead], tuple[dict[str, Any], str | None]]
"""Widget values of a run's loaded settings (form values by config leaf name), and a note for
the user or None; files it reads must pass ``may_read``."""


@dataclasses.dataclass
class TabParts:
    """What the page needs of a mode's tab (``<mode>/tab.py``'s ``build(page, preset)``).

    Attributes:
        fields: its form widgets by name (config leaf names, where the gallery loads settings).
        names: the form's field names, in order.
        values: the form's initial values.
        runs: the events that make a run (the gallery refreshes after each).
        takes_image: the widget an image sent from another tab lands in (a file path); None:
            this tab takes none.
        sends: buttons that send an image of this tab to the tab that takes images.
        loaded: turns loaded settings into this tab's widget values, for a tab whose widgets
            are not one per config field; None: the values as they are.
    """

    fields: dict[str, gr.components.Component]
    names: list[str]
    values: dict[str, Any]
    runs: list[Any]
    takes_image: gr.components.Component | None = None
    sends: list[ImageSender] = dataclasses.field(default_factory=list)
    loaded: Loaded | None = None


@dataclasses.dataclass
class Page:
    """The studio, the path policy and the limits every tab's handlers use.

    Attributes:
        runs_at_once: heavy events run at once (1: one device; ``app.py --ray``: the pool's queue
            decides, so as many as it may hold).
    """

    studio: Studio
    paths: PathPolicy
    max_upscale_megapixels: float
    runs_at_once: int = 1

    @property
    def heavy(self) -> dict[str, Any]:
        """Event options of a run (:data:`HEAVY`, with :attr:`runs_at_once` of them at once)."""
        return {**HEAVY, "concurrency_limit": self.runs_at_once}

    def claimed(self, request: gr.Request) -> tuple[str, str, Any]:
        """The first, unqueued half of every submission: one run per browser session; the
        preview box appears for the run."""
        if not self.studio.session(request).claim():  # the run going on keeps the page; this submission ends here
            raise gr.Error("a run of yours is already going; wait for it or press Stop (Esc).", visible=False,
                           print_exception=False)
        return (message_html("waiting for the GPU…" if self.studio.device.type == "cuda" else "starting…"), "go",
                gr.update(visible=True))

    def stopped(self, request: gr.Request) -> tuple:
        """After Stop: Gradio cancels the run once the Stop click has returned, the job then
        keeps its latest image (within one step); wait for that and offer what was kept.

        Returns:
            status, result, video, files, generation info, preview (hidden) updates.
        """
        session = self.studio.session(request)
        session.finished.wait(timeout=60)
        session.release()
        record = session.record
        if record is None or record.folder is None or record.status not in ("stopped", "failed"):
            return message_html("Stopped."), *[gr.skip()] * 5
        kept = kept_update(record)
        step = f" at step {record.step} of {record.total}" if record.total else ""
        info = generation_info(read_config(record.folder), None, record.step, record.total) \
            if (record.folder / "config.json").is_file() else None  # a grid's folder has none
        return (message_html(f"Stopped{step}. Kept in {record.folder.name}.", "done"),
                gr.update(value=kept.result, visible=True) if kept.result else gr.skip(),
                kept.video or gr.skip(), kept.files or gr.skip(), info or gr.skip(), gr.update(visible=False))

    def status_after_stop(self, request: gr.Request) -> tuple:
        """:meth:`stopped` for a tab that shows only the status line afterwards."""
        return self.stopped(request)[:1]

    def stop_button(self, button: gr.Button, status: gr.HTML, runs: Sequence[Any]) -> None:
        """Wire a Stop button that cancels ``runs`` and then says what was kept."""
        button.click(lambda: message_html("Stopping…"), None, status, cancels=list(runs), **QUICK).then(
            self.status_after_stop, None, [status], **QUICK)

    def sent_image(self, path: str | None, request: gr.Request) -> str:
        """The checked path of an image one tab sends to another: a file of the server this
        visitor may read (an upload, a result sent to it, one of its runs).

        Raises:
            InputError: there is no image, or it is not one this visitor may read.
        """
        if not path:
            raise InputError("there is no image to send yet; make or choose one first.")
        checked = self.paths.check_image(path, "image", self.studio.may_read(request))
        if not Path(checked).is_file():
            raise InputError(self.paths.refusal("image", image=True))
        return checked

    def hint_menus(self, menus: Sequence[tuple[str, gr.components.Component]], target: gr.HTML) -> None:
        """Say in ``target``, before any button is pressed, how to get a model a menu names that
        is not installed; ``menus`` are (model kind, menu) pairs."""
        for kind, menu in menus:
            menu.change(self._hinted(kind), menu, target, **QUICK)

    def _hinted(self, kind: str) -> Callable[[str | None], tuple[str]]:
        def hint(value: str | None) -> tuple[str]:
            if not self.paths.open:
                self.paths.check(value, "model")
            text = model_hint(kind, value, self.studio.weights_dir, self.studio.offline)
            return (hint_html(text) if text else "",)
        return guarded(hint, 0, 1)


def run_controls(label: str, elem_id: str) -> tuple[gr.Button, gr.Button, gr.HTML, gr.HTML]:
    """A tab's run button (``label``, id ``elem_id``) and Stop beside it, then its model hint
    and status lines below (ids ``<elem_id>-stop``, ``-hint``, ``-status``)."""
    with gr.Row():
        run = gr.Button(label, variant="primary", elem_id=elem_id)
        stop = gr.Button("Stop", variant="stop", elem_id=f"{elem_id}-stop")
    return run, stop, gr.HTML(elem_id=f"{elem_id}-hint"), gr.HTML(elem_id=f"{elem_id}-status")


def read_config(folder: Path) -> dict[str, Any]:
    """The plain ``config.json`` of a run folder.

    Raises:
        InputError: it is missing or unreadable.
    """
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"the settings of {folder.name} cannot be read ({error}).") from None


def gr_guard(build: Callable[[], Any]) -> Any:
    """``build()``, its config errors raised as one-sentence gr.Error messages."""
    try:
        return build()
    except GeneratorError as error:
        raise gr.Error(str(error), print_exception=False) from None


def config_from(config_cls: type, form: dict[str, Any]) -> Any:
    """The config of a form (file widgets give paths), its errors as one sentence."""
    form = {name: (str(value) if hasattr(value, "__fspath__") else value) for name, value in form.items()}
    return gr_guard(lambda: from_form(config_cls, form))
