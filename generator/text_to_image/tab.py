"""The Text to image tab: the form, a live preview that becomes the result, Continue, Vary this,
Edit this image, Stop that keeps the latest image, presets and seeds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from generator.config import GenerationConfig, ModelsConfig, new_seed
from generator.errors import InputError
from generator.io.latents import LATENT_FILE
from generator.presets import load_preset
from generator.text_to_image.mode import TEXT_TO_IMAGE
from generator.webui.forms import preset_fields, to_form
from generator.webui.grid_jobs import AXIS_CHOICES, MAX_WEB_CELLS, grid_job, parse_web_axis
from generator.webui.handlers import guarded, named, stream
from generator.webui.jobs import Update, text_to_image_job
from generator.webui.status import message_html
from generator.webui.studio import Session, Studio
from generator.webui.tabs.page import (
    CLAIMING,
    QUICK,
    ImageSender,
    Page,
    TabParts,
    config_from,
    gr_guard,
    read_config,
)
from generator.webui.widgets import text_to_image_widgets

PREVIEW_EVERY = 10  # steps between previews when a preset sets none: watching the image form is the point
VARY_STRENGTH = 0.1  # "Vary this": near the image, yet visibly another one
_BUTTONS = ("run", "stop", "preset", "preset_info", "random_seed", "reuse_seed", "image_prompt_files")
_OUTPUTS = ["status", "preview", "result", "video", "files", "info", "seed"]
_GRID_OUTPUTS = ["status", "preview", "result", "files", "info"]


def build(page: Page, preset: str) -> TabParts:
    """Lay out the tab (inside a ``gr.Tab``) and wire its events; ``preset`` fills the form at first."""
    values = to_form(preset_config(preset, page.studio))
    values["save_every"] = values["save_every"] or PREVIEW_EVERY
    t2i = text_to_image_widgets(values, preset, page.studio.weights_dir)
    grid, grid_button = grid_widgets()
    hint = gr.HTML(elem_id="model-hint")
    status = gr.HTML(elem_id="status")
    with gr.Row():
        preview = gr.Image(label="Preview", type="pil", elem_id="preview", interactive=False, format="png",
                           height=420, visible=False)
        with gr.Column():
            result = gr.Image(label="Result", type="filepath", elem_id="result", interactive=False, format="png",
                              height=420, visible=False)
            info = gr.Markdown(elem_id="info")
            with gr.Row(visible=False) as more_row:
                more = gr.Number(100, label="More steps", precision=0, minimum=1, maximum=10_000, scale=1,
                                 elem_id="more-steps")
                continue_button = gr.Button("Continue this image", scale=1, elem_id="continue")
                vary_strength = gr.Number(VARY_STRENGTH, label="Variation strength (0 to 1)", minimum=0, maximum=1,
                                          step=0.05, scale=1, elem_id="vary-strength")
                vary_button = gr.Button("Vary this", scale=1, elem_id="vary")
                edit_button = gr.Button("Edit this image", scale=1, elem_id="send-to-edit")
    with gr.Row():
        video = gr.Video(label="Video", interactive=False, height=420, visible=False)
        files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="files", visible=False)
    claim = gr.State(None)
    seed = gr.State(None)
    names = [n for n in t2i if n not in _BUTTONS]
    studio, paths = page.studio, page.paths

    def shown(request: gr.Request) -> tuple[Any, ...]:
        """After a run (done, stopped or failed): the result in place of the preview, "continue",
        and the video and downloads when there are some; nothing changes if nothing was kept."""
        record = studio.session(request).record
        if record is None or record.result is None:
            return (gr.skip(),) * 5
        continuable = record.folder is not None and (record.folder / "config.json").is_file()  # not a grid
        return (gr.update(visible=False), gr.update(visible=True), gr.update(visible=continuable),
                gr.update(visible=bool(record.videos)), gr.update(visible=True))

    def form_config(form: dict[str, Any], request: gr.Request) -> GenerationConfig:
        """The form's config, its uploaded image prompts added and every path checked (the form's
        batch count and grid widgets are taken out of ``form``)."""
        uploads = form.pop("image_prompt_files") or []
        if uploads:
            extra = " | ".join(str(f) for f in uploads)
            form["image_prompts"] = f"{form['image_prompts']} | {extra}" if form["image_prompts"] else extra
        for name in (*grid, "images"):
            form.pop(name, None)
        return checked_config(form, request)

    def checked_config(form: dict[str, Any], request: gr.Request) -> GenerationConfig:
        return config_from(GenerationConfig, paths.check_generation_form(form, studio.may_read(request)))

    def generate(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = studio.session(request)

        def job() -> Iterator[Update]:
            count = int(form.get("images", 1) or 1)
            return text_to_image_job(studio, form_config(form, request), session, count=count)

        yield from stream(job, _OUTPUTS, session)

    def gridded(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = studio.session(request)

        def job() -> Iterator[Update]:
            x = parse_web_axis("X", form["grid_x"], form["grid_x_values"])
            y = parse_web_axis("Y", form["grid_y"], form["grid_y_values"])
            if x is None:
                raise InputError("choose a setting for X and give its values (such as Seed: 1, 2, 3), then make "
                                 "the grid.")
            config = form_config(form, request)
            return grid_job(studio, config, x, y, session,
                            checked=lambda cell: checked_config(to_form(cell), request))

        yield from stream(job, _GRID_OUTPUTS, session)

    def continued(claim: str | None, more: float | None, request: gr.Request) -> Iterator[tuple]:
        session = studio.session(request)

        def job() -> Iterator[Update]:
            config, parent = continuation(session, int(more or 0))
            return text_to_image_job(studio, config, session, parent=parent)

        yield from stream(job, _OUTPUTS, session)

    def varied(claim: str | None, strength: float | None, request: gr.Request) -> Iterator[tuple]:
        session = studio.session(request)
        yield from stream(lambda: text_to_image_job(studio, variation(session, strength), session), _OUTPUTS, session)

    inputs = [claim] + [t2i[n] for n in names] + [t2i["image_prompt_files"]]
    outputs = [status, preview, result, video, files, info, seed]
    generate_fn = named(generate, [*names, "image_prompt_files"])
    grid_fn = named(gridded, [*names, "image_prompt_files", *grid])
    grid_inputs = inputs + list(grid.values())
    claim_out = [status, claim, preview]
    runs = [t2i["run"].click(page.claimed, None, claim_out, **CLAIMING).success(
                generate_fn, inputs, outputs, api_name=TEXT_TO_IMAGE.api, **page.heavy),
            t2i["prompts"].submit(page.claimed, None, claim_out, **CLAIMING).success(
                generate_fn, inputs, outputs, api_name=False, **page.heavy),
            continue_button.click(page.claimed, None, claim_out, **CLAIMING).success(
                continued, [claim, more], outputs, api_name=False, **page.heavy),
            vary_button.click(page.claimed, None, claim_out, **CLAIMING).success(
                varied, [claim, vary_strength], outputs, api_name="vary", **page.heavy)]
    grid_run = grid_button.click(page.claimed, None, claim_out, **CLAIMING).success(
        grid_fn, grid_inputs, [status, preview, result, files, info], api_name="grid", **page.heavy)
    shown_out = [preview, result, more_row, video, files]
    for event in runs:
        event.then(shown, None, shown_out, **QUICK)
    grid_run.then(shown, None, shown_out, **QUICK)
    runs.append(grid_run)
    t2i["stop"].click(lambda: message_html("Stopping…"), None, status, cancels=runs, **QUICK).then(
        page.stopped, None, [status, result, video, files, info, preview], **QUICK).then(
        shown, None, shown_out, **QUICK)
    t2i["random_seed"].click(lambda: new_seed(), None, t2i["seed"], **QUICK)
    t2i["reuse_seed"].click(lambda last: gr.skip() if last is None else last, seed, t2i["seed"], **QUICK)
    preset_outputs = [t2i[n] for n in names] + [t2i["preset_info"], status]
    t2i["preset"].change(guarded(lambda name: preset_update(name, studio, names), len(preset_outputs) - 1,
                                 len(preset_outputs)), t2i["preset"], preset_outputs, **QUICK)
    page.hint_menus((("vqgan", t2i["vqgan"]), ("transformer", t2i["prior"]), ("upscaler", t2i["upscale_model"])),
                    hint)
    return TabParts(t2i, names, values, runs, sends=[ImageSender(edit_button, result, status)])


def grid_widgets() -> tuple[dict[str, gr.components.Component], gr.Button]:
    """The X/Y grid panel: a setting and its values for each axis (by name), and its button."""
    w: dict[str, gr.components.Component] = {}
    with gr.Accordion("X/Y grid", open=False, elem_id="grid-panel"):
        gr.Markdown(f"One image for each combination of the X and Y values (at most {MAX_WEB_CELLS}), every other "
                    "setting as in the form above; the result is one labelled grid. Values are separated by commas; "
                    "*Prompt search/replace*: the first value is a word of the prompt, each value replaces it in "
                    "turn.")
        with gr.Row():
            w["grid_x"] = gr.Dropdown(AXIS_CHOICES, value="seed", label="X: setting", allow_custom_value=True,
                                      elem_id="grid-x", scale=1)
            w["grid_x_values"] = gr.Textbox(label="X: values", placeholder="1, 2, 3", elem_id="grid-x-values", scale=2)
            w["grid_y"] = gr.Dropdown([("(none)", ""), *AXIS_CHOICES], value="", label="Y: setting",
                                      allow_custom_value=True, elem_id="grid-y", scale=1)
            w["grid_y_values"] = gr.Textbox(label="Y: values", placeholder="16, 32", elem_id="grid-y-values", scale=2)
        button = gr.Button("Make grid", elem_id="grid-run")
    return w, button


def continuation(session: Session, more: int) -> tuple[GenerationConfig, Path]:
    """The config that continues this session's latest text-to-image run for ``more`` steps
    from its saved latent, and the run folder it continues.

    Raises:
        InputError: there is no such run (with a saved latent) yet, or ``more`` is below 1.
    """
    record = session.record
    if record is None or record.mode != TEXT_TO_IMAGE.name or record.folder is None \
            or not (record.folder / LATENT_FILE).is_file():
        raise InputError("there is no image to continue yet; generate one (or stop a run) first.")
    if more < 1:
        raise InputError("give 1 or more steps to continue for.")
    plain = read_config(record.folder)
    plain["steps"] = more
    plain["init"] = {**plain.get("init", {}), "init": "latent", "init_latent": str(record.folder)}
    return GenerationConfig.from_dict(plain), record.folder


def variation(session: Session, strength: float | None, variation_seed: int | None = None) -> GenerationConfig:
    """The config of a variation of this session's latest text-to-image result ("Vary this"):
    its settings and seed, with a fresh random variation seed (or ``variation_seed``) at
    ``strength``. A variation of a variation varies the same seed's image again, with the new
    variation seed in place of the old one.

    Raises:
        InputError: there is no such result yet, it has no random start to vary (it started
            from an image or continued a run), or ``strength`` is not between 0 and 1.
    """
    record = session.record
    if record is None or record.mode != TEXT_TO_IMAGE.name or record.folder is None or record.result is None:
        raise InputError("there is no image to vary yet; generate one first.")
    if strength is None or not 0 <= strength <= 1:
        raise InputError("give a variation strength between 0 and 1 (0.1 stays close to the image).")
    plain = read_config(record.folder)
    plain["init"] = {**plain.get("init", {}), "variation_seed": None, "variation_strength": None}
    if not GenerationConfig.from_dict(plain).has_random_start:
        raise InputError("this image did not start from random noise (it started from an image or continued "
                         "another), so it has no start to vary.")
    chosen = new_seed() if variation_seed is None else variation_seed
    plain["init"].update(variation_seed=chosen, variation_strength=float(strength))
    return GenerationConfig.from_dict(plain)


def preset_config(name: str, studio: Studio) -> GenerationConfig:
    """A text-to-image preset; one that leaves the models alone keeps the app's models."""
    config = gr_guard(lambda: load_preset(name, kind=TEXT_TO_IMAGE.name).config())
    return config.replace(models=studio.models) if config.models == ModelsConfig() else config


def preset_update(name: str, studio: Studio, names: Sequence[str]) -> tuple[Any, ...]:
    """The widgets a preset names, its description, and a status line; every other widget
    (the prompt above all) keeps what the user set."""
    preset = load_preset(name, kind=TEXT_TO_IMAGE.name)
    values = to_form(preset_config(name, studio))
    fields = preset_fields(GenerationConfig, preset.settings)
    changed = [n for n in names if n in fields]
    note = f"Preset {name}: " + (", ".join(changed) + " set." if changed else "nothing to change.")
    return (*[values.get(n, gr.skip()) if n in fields else gr.skip() for n in names], preset.description,
            message_html(note))
