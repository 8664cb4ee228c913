"""The Gallery and PNG info tabs: a browser's own past runs (select, load their settings into
a form, download as zip, delete) and the settings written into any output PNG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from generator.config import GenerationConfig, SampleConfig
from generator.errors import InputError
from generator.webui.forms import to_form
from generator.webui.gallery import PastRun, delete_run, zip_run
from generator.webui.handlers import guarded
from generator.webui.pnginfo import read_settings
from generator.webui.status import error_html, message_html
from generator.webui.tabs.page import QUICK, Page
from generator.webui.tabs.sample import PriorTab
from generator.webui.tabs.text_to_image import TextToImageTab
from generator.webui.visitors import visitor_of


def gallery_tabs(page: Page, tabs: gr.Tabs, t2i: TextToImageTab, prior: PriorTab, runs: Sequence[Any],
                 demo: gr.Blocks) -> None:
    """Lay out the Gallery and PNG info tabs (inside ``tabs``) and wire their events: loading
    settings fills the Text to image or Prior form and switches to it; the gallery refreshes
    after each of ``runs`` and when a page loads. Whose runs are shown is the visitor's
    cookie (:mod:`generator.webui.visitors`), never anything the page sends."""
    with gr.Tab("Gallery", id="gallery"):
        refresh_button = gr.Button("Refresh")
        gallery = gr.Gallery(label="Past runs (newest first)", columns=5, elem_id="gallery", interactive=False)
        title = gr.HTML(elem_id="gallery-status")
        settings = gr.JSON(label="Settings")
        with gr.Row():
            load_button = gr.Button("Load these settings", elem_id="load-settings")
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
        chosen = {"mode": run.mode, "config": run.config, "folder": run.folder.name}
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

    def load(chosen: dict | None) -> tuple:
        if not isinstance(chosen, dict) or not isinstance(chosen.get("config"), dict):
            return (error_html("select a run in the gallery first, then load its settings."), gr.skip(),
                    *[gr.skip()] * (len(t2i.names) + len(prior.names)))
        if chosen.get("mode") == "sample":
            values = to_form(SampleConfig.from_dict(chosen["config"]))
            return (message_html("Loaded into the Prior tab."), gr.Tabs(selected="prior"),
                    *[gr.skip()] * len(t2i.names), *[values.get(n, gr.skip()) for n in prior.names])
        values = to_form(GenerationConfig.from_dict(chosen["config"]))
        return (message_html("Loaded into the Text to image tab."), gr.Tabs(selected="t2i"),
                *[values.get(n, gr.skip()) for n in t2i.names], *[gr.skip()] * len(prior.names))

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
    load_outputs = [title, tabs, *[t2i.fields[n] for n in t2i.names], *[prior.fields[n] for n in prior.names]]
    load_button.click(guarded(load, 0, len(load_outputs)), selected, load_outputs, api_name="load_settings", **QUICK)
    png_input.change(guarded(png_read, 0, 3), png_input, [png_status, png_settings, png_selected], api_name="png_info",
                     **QUICK)
    png_load.click(guarded(load, 0, len(load_outputs)), png_selected, [png_status, *load_outputs[1:]], api_name=False,
                   **QUICK)
    for event in runs:
        event.then(guarded(refreshed, None, 1), None, gallery, api_name=False, **QUICK)
    demo.load(guarded(refreshed, None, 1), None, gallery, api_name=False, **QUICK)


def _chosen_folder(chosen: Any, action: str) -> str:
    """The run folder name of the gallery's selection, or one sentence."""
    folder = chosen.get("folder") if isinstance(chosen, dict) else None
    if not isinstance(folder, str) or not folder:
        raise InputError(f"select one of your runs in the gallery first, then {action}.")
    return folder
