"""The Gallery and PNG info tabs: a browser's own past runs (select, load their settings into
a form, download as zip, delete) and the settings written into any output PNG."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gradio as gr

from generator import modes
from generator.errors import InputError
from generator.webui.forms import to_form
from generator.webui.gallery import PastRun, delete_run, zip_run
from generator.webui.handlers import guarded
from generator.webui.pnginfo import read_settings
from generator.webui.status import error_html, message_html
from generator.webui.tabs.page import QUICK, Page, TabParts, gr_guard
from generator.webui.visitors import visitor_of


def gallery_tabs(page: Page, tabs: gr.Tabs, parts: Mapping[str, TabParts], demo: gr.Blocks) -> None:
    """Lay out the Gallery and PNG info tabs (inside ``tabs``) and wire their events: loading
    settings fills the form of the run's mode (``parts``: each mode's tab by mode name) and
    switches to it; the gallery refreshes after every run and when a page loads. Whose runs
    are shown is the visitor's cookie (:mod:`generator.webui.visitors`), never anything the
    page sends. Buttons that send an image to the tab that takes images ("Edit this image",
    also one here for the selected run) put it there and switch to that tab."""
    loadable = [name for name in parts if modes.MODES[name].loadable]
    fields = [(name, field) for name in loadable for field in parts[name].names]
    taker = next((name for name, part in parts.items() if part.takes_image is not None), None)
    with gr.Tab("Gallery", id="gallery"):
        refresh_button = gr.Button("Refresh")
        gallery = gr.Gallery(label="Past runs (newest first)", columns=5, elem_id="gallery", interactive=False)
        title = gr.HTML(elem_id="gallery-status")
        settings = gr.JSON(label="Settings")
        with gr.Row():
            load_button = gr.Button("Load these settings", elem_id="load-settings")
            if taker is not None:
                send_button = gr.Button(f"{modes.MODES[taker].title} this image", elem_id="gallery-send")
            zip_button = gr.Button("Download as zip", elem_id="download-run")
            delete_button = gr.Button("Delete", variant="stop", elem_id="delete-run")
        download = gr.File(label="Run as a zip", interactive=False, elem_id="run-zip")
        selected = gr.State(None)
    with gr.Tab("PNG info", id="pnginfo"):
        png_input = gr.File(label="Drop an output PNG", file_types=[".png"], elem_id="png-input")
        png_status = gr.HTML(elem_id="png-status")
        png_settings = gr.JSON(label="Settings")
        png_load = gr.Button("Load these settings", elem_id="png-load")
        png_selected = gr.State(None)
    studio = page.studio

    def my_runs(request: gr.Request) -> list[PastRun]:
        return studio.runs_for(visitor_of(request))

    def refresh(request: gr.Request) -> list[tuple[str, str]]:
        return [(str(run.image), run.caption) for run in my_runs(request)]

    def select(event: gr.SelectData, request: gr.Request) -> tuple:
        index = getattr(event, "index", None)
        index = index[0] if isinstance(index, list | tuple) and index else index
        listed = my_runs(request)
        if type(index) is not int or not 0 <= index < len(listed):
            return error_html("that is not a run of your gallery; press Refresh and choose again."), None, None
        run = listed[index]
        chosen = {"mode": run.mode, "config": run.config, "folder": run.folder.name, "image": str(run.image)}
        return message_html(f"{run.title} — {run.mode}, {run.folder.name}"), run.config, chosen

    def delete(chosen: dict | None, request: gr.Request) -> tuple:
        folder = _chosen_folder(chosen, "delete it")
        session = studio.session(request)
        running = not session.finished.is_set() and session.folder is not None
        if running and session.folder.name == folder:
            raise InputError("this run is still being made; stop it first, then delete it.")
        delete_run(studio.owners, folder, visitor_of(request), studio.shared_gallery)
        return message_html(f"Deleted {folder}."), refresh(request), None, None

    def zipped(chosen: dict | None, request: gr.Request) -> tuple:
        folder = _chosen_folder(chosen, "download it")
        archive = zip_run(studio.owners, folder, visitor_of(request), studio.shared_gallery)
        return message_html(f"{archive.name} is ready below."), str(archive)

    def load(chosen: dict | None, request: gr.Request) -> tuple:
        """Fill the form of the chosen run's mode with its settings and switch to its tab."""
        skip_all = [gr.skip()] * len(fields)
        if not isinstance(chosen, dict) or not isinstance(chosen.get("config"), dict):
            return error_html("select a run in the gallery first, then load its settings."), gr.skip(), *skip_all
        mode = modes.recorded(chosen.get("mode"))
        if mode is None or mode.name not in loadable:
            loadable_titles = " or ".join(modes.MODES[name].title.lower() for name in loadable)
            return (error_html(f"settings of this kind of run cannot be loaded into a tab; choose a {loadable_titles} "
                               "run."), gr.skip(), *skip_all)
        values = to_form(gr_guard(lambda: mode.config.from_dict(chosen["config"])))
        note = None
        if parts[mode.name].loaded is not None:
            values, note = parts[mode.name].loaded(values, studio.may_read(request))
        return (message_html(f"Loaded into the {mode.title} tab." + (f" {note}" if note else "")),
                gr.Tabs(selected=mode.name),
                *[values.get(field, gr.skip()) if name == mode.name else gr.skip() for name, field in fields])

    def png_read(path: str | None, request: gr.Request) -> tuple:
        if not path:
            return "", None, None
        found = read_settings(page.paths.check_image(path, "PNG", studio.may_read(request)))
        return message_html(found.summary), found.config, {"mode": found.mode, "config": found.config}

    def refreshed(request: gr.Request) -> tuple:
        return (refresh(request),)

    refresh_button.click(guarded(refreshed, None, 1), None, gallery, api_name="gallery", **QUICK)
    delete_button.click(guarded(delete, 0, 4), selected, [title, gallery, settings, selected], api_name="delete_run",
                        **QUICK)
    zip_button.click(guarded(zipped, 0, 2), selected, [title, download], api_name="zip_run", **QUICK)
    gallery.select(guarded(select, 0, 3), None, [title, settings, selected], api_name="select_run", **QUICK)
    load_outputs = [title, tabs, *[parts[name].fields[field] for name, field in fields]]
    load_button.click(guarded(load, 0, len(load_outputs)), selected, load_outputs, api_name="load_settings", **QUICK)
    png_input.change(guarded(png_read, 0, 3), png_input, [png_status, png_settings, png_selected], api_name="png_info",
                     **QUICK)
    png_load.click(guarded(load, 0, len(load_outputs)), png_selected, [png_status, *load_outputs[1:]], api_name=False,
                   **QUICK)
    if taker is not None:
        target = parts[taker].takes_image
        for sender in [sender for tab in parts.values() for sender in tab.sends]:
            sender.button.click(guarded(_sender(page, taker), 0, 3), sender.image, [sender.status, tabs, target],
                                api_name=False, **QUICK)
        send_button.click(guarded(_sender(page, taker), 0, 3), selected, [title, tabs, target], api_name=False,
                          **QUICK)
    for event in [run for tab in parts.values() for run in tab.runs]:
        event.then(guarded(refreshed, None, 1), None, gallery, api_name=False, **QUICK)
    demo.load(guarded(refreshed, None, 1), None, gallery, api_name=False, **QUICK)


def _sender(page: Page, taker: str) -> Callable[..., tuple]:
    """The handler of a button that sends an image (a path, or a gallery selection) to the tab
    of the mode ``taker``: a status line, that tab selected, the checked image."""
    mode = modes.MODES[taker]

    def send(image: str | dict | None, request: gr.Request) -> tuple:
        if isinstance(image, dict):
            image = image.get("image")
            if not image:
                raise InputError("select one of your runs in the gallery first, then send its image.")
        path = page.sent_image(image if isinstance(image, str) else None, request)
        return message_html(f"Sent to the {mode.title} tab."), gr.Tabs(selected=mode.name), path

    return send


def _chosen_folder(chosen: Any, action: str) -> str:
    """The run folder name of the gallery's selection, or one sentence."""
    folder = chosen.get("folder") if isinstance(chosen, dict) else None
    if not isinstance(folder, str) or not folder:
        raise InputError(f"select one of your runs in the gallery first, then {action}.")
    return folder
