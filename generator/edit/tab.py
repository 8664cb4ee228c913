"""The Edit tab: paint over the part of an image to change (or choose an outpaint), say what it
should show, and watch the composite form; only the painted part (or the new border) changes.

The brush paints in white (the prompt's part) or magenta (the part of a second prompt, when
one is given): the two are region prompts (``text @ mask``), each scored only on its part. The
editor's image and masks are written to a private folder of the run (granted to the visitor,
as an upload is) and removed when the run ends; the run folder keeps its own copies
(``edit-image.png``, ``edit-mask.png``, ``region-N.png``), which the gallery loads back into
the editor (the mask painted into the picture it shows, see :mod:`generator.edit.editor_values`).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from generator.config import MASK_FILLS, MAX_SIDE, GenerationConfig
from generator.edit.editor_values import (
    FIRST_COLOUR,
    SECOND_COLOUR,
    EditorFiles,
    LoadedEdit,
    editor_files,
    loaded_editor,
)
from generator.edit.mode import EDIT
from generator.edit.pipeline import Editor
from generator.errors import InputError
from generator.io.masks import ALPHA
from generator.text_to_image.checks import check_settings
from generator.text_to_image.prompts import WeightedPrompt, parse_prompts, parse_story
from generator.text_to_image.tab import preset_config
from generator.webui.forms import to_form
from generator.webui.handlers import named, stream
from generator.webui.jobs import Update, pooled, present_run
from generator.webui.paths import MayRead, PathPolicy
from generator.webui.status import message_html
from generator.webui.studio import Session, Studio
from generator.webui.tabs.page import CLAIMING, QUICK, Page, TabParts, config_from
from generator.webui.visitors import visitor_of
from generator.webui.widgets import models_menu

PREVIEW_EVERY = 10  # steps between previews of the composite
INPAINT, OUTPAINT = "inpaint", "outpaint"
SIDES = ("left", "top", "right", "bottom")
OUTPAINT_START = {"left": 0, "top": 0, "right": 128, "bottom": 0}
FIELDS = ["prompts", "mask_blur", "mask_fill", "steps", "seed", "vqgan", "vqgan_config", "clip_models"]
"""The widgets that are config fields as they are."""
NAMES = ["image", "prompts", "region_prompt", "change", *[f"outpaint_{side}" for side in SIDES], *FIELDS[1:]]
"""The run's widgets (the API's parameters), in order."""
LOADED = "loaded"
"""The state that remembers an edit loaded from the gallery (:class:`LoadedEdit`)."""
_OUTPUTS = ["status", "preview", "result", "files", "info"]


def build(page: Page, preset: str) -> TabParts:
    """Lay out the tab (inside a ``gr.Tab``) and wire its events; ``preset`` (a text-to-image
    preset) gives the settings the tab does not show."""
    base = to_form(preset_config(preset, page.studio))
    w: dict[str, gr.components.Component] = {}
    with gr.Row(equal_height=True):
        w["prompts"] = gr.Textbox(base["prompts"], label="Prompt: what the changed part should show", scale=4,
                                  max_lines=3, elem_id="edit-prompt",
                                  placeholder="a red sky | clouds:0.5   (Enter to edit)",
                                  info="Paint the part to change in white.")
        w["region_prompt"] = gr.Textbox("", label="Second prompt: what the magenta part should show (optional)",
                                        scale=3, max_lines=3, elem_id="edit-region-prompt",
                                        placeholder="a lake | reflections:0.5",
                                        info="With a second prompt, the white part follows the first one and the "
                                             "magenta part this one.")
        with gr.Column(scale=1, min_width=150):
            run_button = gr.Button(EDIT.title, variant="primary", elem_id=EDIT.api)
            stop_button = gr.Button("Stop", variant="stop", elem_id=f"{EDIT.api}-stop")
    with gr.Row():
        w["change"] = gr.Radio([("Inpaint: the painted part", INPAINT), ("Outpaint: a new border", OUTPAINT)],
                               value=INPAINT, label="Change", elem_id="edit-change")
        w["mask_fill"] = gr.Radio([(fill, fill) for fill in MASK_FILLS], value=base["mask_fill"],
                                  label="Start the masked part from", elem_id="edit-mask-fill")
        w["mask_blur"] = gr.Number(base["mask_blur"], label="Mask blur (pixels; 0: a hard edge)", minimum=0,
                                   maximum=256, elem_id="edit-mask-blur")
        w["steps"] = gr.Slider(1, 2000, base["steps"], step=1, label="Steps", elem_id="edit-steps")
        w["seed"] = gr.Number(base["seed"], label="Seed (-1: random)", precision=0, minimum=-1, elem_id="edit-seed")
    with gr.Row(visible=False) as sides:
        for side in SIDES:
            w[f"outpaint_{side}"] = gr.Number(OUTPAINT_START[side], label=f"Add on the {side} (pixels)", precision=0,
                                              minimum=0, maximum=MAX_SIDE, step=16, elem_id=f"edit-outpaint-{side}")
    with gr.Accordion("Models", open=False):
        with gr.Row():
            w["vqgan"] = models_menu("vqgan", base["vqgan"], "VQGAN", page.studio.weights_dir, elem_id="edit-vqgan")
            w["vqgan_config"] = gr.Textbox(base["vqgan_config"], label="VQGAN yaml (optional)")
            w["clip_models"] = gr.Textbox(base["clip_models"], label="CLIP models (MODEL PRETRAINED WEIGHT per line)",
                                          lines=2)
    hint, status = gr.HTML(elem_id=f"{EDIT.api}-hint"), gr.HTML(elem_id=f"{EDIT.api}-status")
    with gr.Row():
        w["image"] = gr.ImageEditor(
            label="Image: paint over the part to change", type="pil", image_mode="RGBA", format="png",
            sources=["upload", "clipboard"], transforms=(), layers=False, height=460, elem_id="edit-image",
            brush=gr.Brush(colors=[FIRST_COLOUR, SECOND_COLOUR], default_color=FIRST_COLOUR, color_mode="fixed"))
        with gr.Column():
            preview = gr.Image(label="Preview (composited over the image)", type="pil", elem_id="edit-preview",
                               interactive=False, format="png", height=420, visible=False)
            result = gr.Image(label="Result", type="filepath", elem_id="edit-result", interactive=False, format="png",
                              height=420, visible=False)
            info = gr.Markdown(elem_id="edit-info")
    files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="edit-files", visible=False)
    claim = gr.State(None)
    w[LOADED] = gr.State(None)
    studio = page.studio

    def claimed(request: gr.Request) -> tuple:
        """The run's claim (:meth:`Page.claimed`); the last result makes way for the preview."""
        return *page.claimed(request), gr.update(visible=False)

    def shown(request: gr.Request) -> tuple:
        """After a run (done, stopped or failed): the result in place of the preview, and the
        downloads; the previous result again when this one made nothing."""
        record = studio.session(request).record
        if record is None or record.mode != EDIT.name or record.result is None:
            return gr.update(visible=False), gr.skip(), gr.skip()
        return gr.update(visible=False), gr.update(visible=True), gr.update(visible=True)

    def edit(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = studio.session(request)
        yield from stream(lambda: edit_updates(page, base, form, request, session), _OUTPUTS, session)

    inputs = [claim, *[w[name] for name in NAMES], w[LOADED]]
    outputs = [status, preview, result, files, info]
    claim_outputs = [status, claim, preview, result]
    edit_fn = named(edit, [*NAMES, LOADED])
    runs = [run_button.click(claimed, None, claim_outputs, **CLAIMING).success(
                edit_fn, inputs, outputs, api_name=EDIT.api, **page.heavy),
            w["prompts"].submit(claimed, None, claim_outputs, **CLAIMING).success(
                edit_fn, inputs, outputs, api_name=False, **page.heavy)]
    for event in runs:
        event.then(shown, None, [preview, result, files], **QUICK)
    stop_button.click(lambda: message_html("Stopping…"), None, status, cancels=runs, **QUICK).then(
        page.stopped, None, [status, result, gr.State(), files, info, preview], **QUICK).then(
        shown, None, [preview, result, files], **QUICK)
    w["change"].change(lambda change: gr.update(visible=change == OUTPAINT), w["change"], sides, **QUICK)
    page.hint_menus((("vqgan", w["vqgan"]),), hint)
    values = {name: base.get(name) for name in FIELDS} | {"change": INPAINT, "region_prompt": ""} | {
        f"outpaint_{side}": OUTPAINT_START[side] for side in SIDES}
    return TabParts(w, [*NAMES, LOADED], values, runs, takes_image=w["image"],
                    loaded=lambda loaded, may_read: loaded_values(page.paths, loaded, may_read))


def outpaint_sides(form: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of an outpaint, None for an inpaint.

    Raises:
        InputError: an outpaint that adds nothing, or a side below 0.
    """
    if form.get("change") != OUTPAINT:
        return None
    sides = tuple(int(form.get(f"outpaint_{side}") or 0) for side in SIDES)
    if min(sides) < 0 or not any(sides):
        raise InputError("an outpaint adds pixels; give 16 or more on at least one side (and none below 0).")
    return sides  # type: ignore[return-value]


def edit_config(paths: PathPolicy, base: dict[str, Any], form: dict[str, Any], files: EditorFiles,
                outpaint: tuple[int, int, int, int] | None, may_read: MayRead) -> GenerationConfig:
    """The config of an edit: the preset's form values ``base``, the tab's fields, the editor's
    files and the outpaint, every path checked; the size is the image's own.

    Raises:
        gr.Error: a refused path or a bad value, as one sentence.
    """
    values = dict(base) | {name: form[name] for name in FIELDS if name in form}
    if files.regions is not None:
        values["prompts"] = region_prompts(str(form.get("prompts") or ""), str(form.get("region_prompt") or ""),
                                           files.regions)
    values |= {"init": "image", "init_image": str(files.image), "mask": files.mask,
               "outpaint": list(outpaint) if outpaint else None, "width": 0, "height": 0,
               "save_every": PREVIEW_EVERY, "video": False, "gif": False}
    return config_from(GenerationConfig, paths.check_generation_form(values, may_read))


def region_prompts(first: str, second: str, regions: tuple[Path | None, Path]) -> str:
    """The prompt of an edit with a second prompt: each entry of ``first`` (every story phrase's)
    scored on the white part (the whole image when nothing is white) and each of ``second`` on
    the magenta part; entries that name their own region keep it.

    Raises:
        InputError: either prompt does not parse.
    """
    white, magenta = regions

    def placed(prompts: tuple[WeightedPrompt, ...], region: Path | None) -> list[str]:
        return [str(prompt if prompt.region or region is None else dataclasses.replace(prompt, region=str(region)))
                for prompt in prompts]

    second_entries = placed(parse_prompts(second, kind="second prompt"), magenta)
    if not first.strip():
        return " | ".join(second_entries)
    return " ^ ".join(" | ".join(placed(phrase, white) + second_entries) for phrase in parse_story(first))


def edit_updates(page: Page, base: dict[str, Any], form: dict[str, Any], request: Any,
                 session: Session) -> Iterator[Update]:
    """The job of one press of Edit: the editor's image and mask written to a private folder
    (granted to the visitor, as its uploads are), the config checked, then :func:`edit_job`.

    Raises:
        InputError: no image; nothing painted for an inpaint of an opaque image; a refused path.
    """
    outpaint = outpaint_sides(form)
    may_read = page.studio.may_read(request)
    loaded = form.get(LOADED)
    if isinstance(loaded, LoadedEdit):  # checked when it was loaded; checked again before it is read
        loaded = LoadedEdit(page.paths.check_image(loaded.image, "image to edit", may_read),
                            page.paths.check_image(loaded.mask, "mask", may_read) or None, loaded.shown)
    scratch = Path(tempfile.mkdtemp(prefix="vqgan-studio-edit-"))
    try:
        files = editor_files(form.get("image"), scratch, outpaint=outpaint is not None,
                             loaded=loaded if isinstance(loaded, LoadedEdit) else None,
                             regions=bool(str(form.get("region_prompt") or "").strip()))
        visitor = visitor_of(request)
        for path in (files.image, files.mask, *(files.regions or ())):
            if path is not None and path != ALPHA:
                page.studio.served.grant(visitor, path)
        config = edit_config(page.paths, base, form, files, outpaint, may_read)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return edit_job(page.studio, config, session, scratch=scratch, notice=files.note)


@pooled(EDIT.name)
def edit_job(studio: Studio, config: GenerationConfig, session: Session, *, scratch: Path | None = None,
             notice: str | None = None) -> Iterator[Update]:
    """Edit into a run folder recorded as an edit (so the gallery lists it and loads it into
    the Edit tab), with previews of the composite; ``scratch``: a folder of this run's inputs,
    removed when the run ends (its folder keeps copies); ``notice``: said as the run starts."""
    try:
        check_settings(config)  # before any model is loaded or downloaded
        with session.running():
            yield Update(status="loading models…", notice=notice)
            editor = Editor(studio.text_to_image_for(config.models))
            yield Update(status="starting…")
            yield from present_run(editor.run(config), studio, session)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def loaded_values(paths: PathPolicy, values: dict[str, Any], may_read: MayRead) -> tuple[dict[str, Any], str | None]:
    """The tab's widget values of an edit's loaded settings: its fields, inpaint or outpaint, and
    the editor showing its image with its mask painted in (and the :class:`LoadedEdit` behind
    that picture); the image and mask are read only when ``may_read`` allows them. An image that
    cannot be shown leaves the editor as it is, with a note saying why."""
    loaded = {name: values[name] for name in FIELDS if name in values}
    outpaint = values.get("outpaint") or None
    loaded["change"] = OUTPAINT if outpaint else INPAINT
    loaded["region_prompt"] = ""  # its regions are in its prompt, as text @ mask
    if outpaint:
        loaded |= {f"outpaint_{side}": int(pixels) for side, pixels in zip(SIDES, outpaint, strict=True)}
    try:
        image = paths.check_image(values.get("init_image"), "image to edit", may_read)
        if not image:
            raise InputError("these settings name no image to edit; upload one.")
        mask = values.get("mask")
        mask = paths.check_image(mask, "mask", may_read) if mask and mask != ALPHA else None
        loaded["image"], loaded[LOADED] = loaded_editor(image, mask or None)
    except InputError as error:
        return loaded, f"The image was not loaded: {error}"
    return loaded, "Its mask is painted in white; paint to add to it." if mask else None
