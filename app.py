"""The web UI: ``python app.py`` serves a Gradio page on http://127.0.0.1:7860.

``build_demo(text_to_image)`` lays out the tabs (text to image, prior, upscale, gallery) over a
:class:`Studio`; ``main()`` parses the flags, loads the models and launches. Importing this
module loads no model. Widgets are named after config fields; the logic behind them is in
``generator/webui`` (jobs, forms, gallery), tested without a browser.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from generator.config import (
    AnimationConfig,
    GenerationConfig,
    ModelsConfig,
    SampleConfig,
    UpscaleConfig,
    clip_model_spec,
    new_seed,
)
from generator.errors import GeneratorError, InputError
from generator.guidance.pipeline import TextToImage
from generator.io.latents import LATENT_FILE
from generator.presets import load_preset
from generator.webui.catalogue import model_hint
from generator.webui.forms import from_form, preset_fields, to_form
from generator.webui.gallery import PastRun, delete_run, zip_run
from generator.webui.handlers import guarded, named, stream
from generator.webui.jobs import (
    Update,
    animation_job,
    generation_info,
    kept_update,
    sample_job,
    text_to_image_job,
    upscale_job,
)
from generator.webui.limits import DEFAULT_MAX_MEGAPIXELS
from generator.webui.paths import PathPolicy
from generator.webui.pnginfo import read_settings
from generator.webui.status import error_html, message_html
from generator.webui.studio import Studio
from generator.webui.widgets import (
    animate_widgets,
    models_menu,
    sample_widgets,
    text_to_image_widgets,
)

logger = logging.getLogger("generator.app")
MAX_UPLOAD = "64mb"
# Results are often small (256 px): show them scaled up to the frame, with crisp pixels.
CSS = """
#preview img, #result img, #upscaled img, #animate-preview img {
  width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;
}
#title h2 { margin: 0; } #title p { margin: 0; opacity: 0.75; }
.status-progress { display: flex; align-items: center; gap: 0.6em; }
.status-bar { flex: 1; height: 6px; border-radius: 3px; background: var(--neutral-200, #ddd); overflow: hidden; }
.status-bar > div { height: 100%; background: var(--color-accent, #f97316); }
.status-error { color: #b3261e; font-weight: 600; }
#run-buttons { min-width: 150px; }
@media (max-width: 600px) { #title h2 { font-size: 1.15rem; } #title p { display: none; } }
"""
# Ctrl+Enter (Cmd+Enter) presses the visible tab's primary button; Esc its Stop.
KEYS_JS = """
() => {
  const visible = (el) => el && el.offsetParent !== null;
  document.addEventListener('keydown', (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === 'Enter') {
      const button = [...document.querySelectorAll('button.primary')].find(visible);
      if (button) { event.preventDefault(); button.click(); }
    } else if (event.key === 'Escape') {
      const button = [...document.querySelectorAll('button.stop')].find(visible);
      if (button) { event.preventDefault(); button.click(); }
    }
  });
}
"""
PREVIEW_EVERY = 10  # steps between previews when a preset sets none: watching the image form is the point
GPU = "gpu"  # every heavy event shares one queue slot: one job at a time on the GPU




def build_demo(text_to_image: TextToImage | None = None, *, studio: Studio | None = None,
               outputs_dir: str | Path = "outputs", preset: str = "default", paths: PathPolicy | None = None,
               max_upscale_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> gr.Blocks:
    """The Gradio Blocks of the app. Nothing is loaded here; models load on first use.

    Args:
        text_to_image: an already-loaded text-to-image pipeline (tests pass tiny ones).
        studio: the models and outputs folder (built from ``text_to_image`` when not given).
        outputs_dir: where run folders go (when ``studio`` is not given).
        preset: the text-to-image preset whose values fill the form at first.
        paths: which server paths the model, yaml and image fields accept (default: any, as
            for a server on 127.0.0.1; see :class:`PathPolicy`).
        max_upscale_megapixels: the largest upscaled image the Upscale tab makes (0: no cap).
    """
    studio = studio or Studio(outputs_dir=Path(outputs_dir), text_to_image=text_to_image)
    paths = paths or PathPolicy.for_server("127.0.0.1", False, outputs_dir=studio.outputs_dir,
                                           weights_dir=studio.weights_dir)
    weights = studio.weights_dir
    t2i_values = to_form(_preset_config(preset, studio))
    t2i_values["save_every"] = t2i_values["save_every"] or PREVIEW_EVERY
    sample_values = to_form(SampleConfig())
    anim_values = to_form(AnimationConfig(models=studio.models))
    anim_values.update({name: t2i_values[name] for name in ("width", "height", "cutn", "prompts")})
    anim_values["steps"] = t2i_values["steps"]
    # No usage analytics are sent: this is a local tool.
    with gr.Blocks(title="VQGAN Studio", analytics_enabled=False) as demo:
        gr.Markdown("## VQGAN Studio\nVQGAN+CLIP, Taming Transformers priors, ESRGAN upscaling", elem_id="title")
        with gr.Tabs() as tabs:
            with gr.Tab("Text to image", id="t2i"):
                t2i = text_to_image_widgets(t2i_values, preset, weights)
                t2i_hint = gr.HTML(elem_id="model-hint")
                t2i_status = gr.HTML(elem_id="status")
                with gr.Row():
                    t2i_preview = gr.Image(label="Preview", type="pil", elem_id="preview", interactive=False,
                                           format="png", height=420, visible=False)
                    with gr.Column():
                        t2i_result = gr.Image(label="Result", type="filepath", elem_id="result", interactive=False,
                                              format="png", height=420, visible=False)
                        t2i_info = gr.Markdown(elem_id="info")
                        with gr.Row(visible=False) as t2i_more_row:
                            t2i_more = gr.Number(100, label="More steps", precision=0, minimum=1, maximum=10_000,
                                                 scale=1, elem_id="more-steps")
                            t2i_continue = gr.Button("Continue this image", scale=1, elem_id="continue")
                with gr.Row():
                    t2i_video = gr.Video(label="Video", interactive=False, height=420, visible=False)
                    t2i_files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="files",
                                        visible=False)
                t2i_claim = gr.State(None)
                t2i_seed = gr.State(None)
            with gr.Tab("Animate", id="animate"):
                anim = animate_widgets(anim_values)
                anim_status = gr.HTML(elem_id="animate-status")
                with gr.Row():
                    anim_preview = gr.Image(label="Latest frame", type="pil", interactive=False, format="png",
                                            height=380, elem_id="animate-preview", visible=False)
                    anim_video = gr.Video(label="Video (grows as frames arrive)", interactive=False, height=380,
                                          elem_id="animate-video", autoplay=True, loop=True)
                anim_files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                     elem_id="animate-files")
                anim_claim = gr.State(None)
            with gr.Tab("Prior", id="prior"):
                smp = sample_widgets(sample_values, weights)
                with gr.Row():
                    smp_run = gr.Button("Sample", variant="primary", elem_id="sample")
                    smp_stop = gr.Button("Stop", variant="stop", elem_id="sample-stop")
                smp_hint = gr.HTML(elem_id="sample-hint")
                smp_status = gr.HTML(elem_id="sample-status")
                with gr.Row():
                    smp_preview = gr.Image(label="Preview", type="pil", interactive=False, format="png", height=420,
                                           visible=False)
                    smp_results = gr.Gallery(label="Samples", columns=4, interactive=False, format="png")
                with gr.Row():
                    smp_video = gr.Video(label="Video", interactive=False, height=420)
                    smp_files = gr.File(label="Downloads", file_count="multiple", interactive=False)
                smp_claim = gr.State(None)
            with gr.Tab("Upscale", id="upscale"):
                with gr.Row():
                    up_model = models_menu("upscaler", UpscaleConfig().upscale_model, "Upscaler", weights,
                                            elem_id="upscale-model")
                    up_scale = gr.Number(0, label="Scale (0: the model's)")
                    up_tile = gr.Number(256, label="Tile (0: whole image)", precision=0)
                    up_denoise = gr.Number(-1, label="Denoise 0..1 (-1: off)")
                    up_alpha = gr.Dropdown(["network", "resize"], value="network", label="Alpha")
                with gr.Row():
                    up_run = gr.Button("Upscale", variant="primary", elem_id="upscale")
                    up_stop = gr.Button("Stop", variant="stop", elem_id="upscale-stop")
                up_hint = gr.HTML(elem_id="upscale-hint")
                up_status = gr.HTML(elem_id="upscale-status")
                with gr.Row():
                    with gr.Column():
                        up_input = gr.Image(label="Image to upscale", type="filepath", height=420,
                                            elem_id="upscale-input", sources=["upload", "clipboard"])
                        up_from = gr.Button("Use the latest result", size="sm")
                    up_result = gr.ImageSlider(label="Before / after", type="filepath", interactive=False,
                                               height=420, elem_id="upscaled")
                up_files = gr.File(label="Download", file_count="multiple", interactive=False)
                up_claim = gr.State(None)
            with gr.Tab("Gallery", id="gallery"):
                gal_refresh = gr.Button("Refresh")
                gallery = gr.Gallery(label="Past runs (newest first)", columns=5, elem_id="gallery", interactive=False)
                gal_title = gr.HTML(elem_id="gallery-status")
                gal_config = gr.JSON(label="Settings")
                with gr.Row():
                    gal_load = gr.Button("Load these settings", elem_id="load-settings")
                    gal_zip = gr.Button("Download as zip", elem_id="download-run")
                    gal_delete = gr.Button("Delete", variant="stop", elem_id="delete-run")
                gal_download = gr.File(label="Run as a zip", interactive=False, elem_id="run-zip")
                gal_selected = gr.State(None)
            with gr.Tab("PNG info", id="pnginfo"):
                png_input = gr.File(label="Drop an output PNG", file_types=[".png"], elem_id="png-input")
                png_status = gr.HTML(elem_id="png-status")
                png_config = gr.JSON(label="Settings")
                png_load = gr.Button("Load these settings", elem_id="png-load")
                png_selected = gr.State(None)
        owner = gr.BrowserState("", storage_key="vqgan-studio-owner")

        buttons = ("run", "stop", "preset", "preset_info", "random_seed", "reuse_seed", "image_prompt_files")
        t2i_names = [n for n in t2i if n not in buttons]
        smp_names = list(smp)
        anim_names = [n for n in anim if n not in ("run", "stop")]
        anim_outputs = ["status", "preview", "video", "files"]
        t2i_outputs = ["status", "preview", "result", "video", "files", "info", "seed"]
        smp_outputs = ["status", "preview", "results", "video", "files"]

        def claimed(request: gr.Request) -> tuple[str, str, Any]:
            """The first, unqueued half of every submission: one run per browser session; the
            preview box appears for the run."""
            if not studio.session(request).claim():  # the run going on keeps the page; this submission ends here
                raise gr.Error("a run of yours is already going; wait for it or press Stop (Esc).", visible=False,
                               print_exception=False)
            return (message_html("waiting for the GPU…" if studio.device.type == "cuda" else "starting…"), "go",
                    gr.update(visible=True))

        def shown(request: gr.Request) -> tuple[Any, ...]:
            """After a run (done, stopped or failed): the result in place of the preview, "continue",
            and the video and downloads when there are some; nothing changes if nothing was kept."""
            record = studio.session(request).record
            if record is None or record.result is None:
                return (gr.skip(),) * 5
            return (gr.update(visible=False), gr.update(visible=True), gr.update(visible=True),
                    gr.update(visible=bool(record.videos)), gr.update(visible=True))

        def generate(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
            session = studio.session(request)

            def job() -> Iterator[Update]:
                files = form.pop("image_prompt_files") or []
                if files:
                    extra = " | ".join(str(f) for f in files)
                    form["image_prompts"] = f"{form['image_prompts']} | {extra}" if form["image_prompts"] else extra
                count = int(form.pop("images", 1) or 1)
                config = _config(GenerationConfig, _checked_t2i(paths, form))
                return text_to_image_job(studio, config, session, count=count)

            yield from stream(job, t2i_outputs, session)

        def continued(claim: str | None, more: float | None, request: gr.Request) -> Iterator[tuple]:
            session = studio.session(request)

            def job() -> Iterator[Update]:
                config, parent = _continuation(session, int(more or 0))
                return text_to_image_job(studio, config, session, parent=parent)

            yield from stream(job, t2i_outputs, session)

        def animate(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
            session = studio.session(request)

            def job() -> Iterator[Update]:
                form["prompt_at"] = [line.strip() for line in str(form["prompt_at"] or "").splitlines() if line.strip()]
                form["video_init"] = paths.check_image(form["video_init"], "video to restyle") or None
                models = {name: t2i_values[name] for name in ("vqgan", "vqgan_config", "clip_models")}
                config = _config(AnimationConfig, {**models, **form})
                return animation_job(studio, config, session)

            yield from stream(job, anim_outputs, session)

        def sample(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
            session = studio.session(request)
            yield from stream(lambda: sample_job(studio, _config(SampleConfig, _checked_sample(paths, form)), session),
                               smp_outputs, session)

        def upscale(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
            session = studio.session(request)

            def job() -> Iterator[Update]:
                path = paths.check_image(form["image"], "image to upscale")
                if not path:
                    raise InputError("there is no image to upscale; upload one or use the latest result.")
                model = paths.check(form["upscale_model"], "upscaler")
                scale, tile, denoise = form["upscale"], form["upscale_tile"], form["upscale_denoise"]
                config = UpscaleConfig(upscale=scale or 0.0, upscale_model=model, upscale_tile=int(tile or 0),
                                       upscale_denoise=None if denoise is None or denoise < 0 else denoise,
                                       upscale_alpha=form["upscale_alpha"])
                return upscale_job(studio, path, config, session, max_megapixels=max_upscale_megapixels)

            yield from stream(job, ["status", "compare", "files"], session)

        def stopped(request: gr.Request) -> tuple:
            """After Stop: Gradio cancels the run once the Stop click has returned, the job then
            keeps its latest image (within one step); wait for that and offer what was kept."""
            session = studio.session(request)
            session.finished.wait(timeout=60)
            session.release()
            record = session.record
            if record is None or record.folder is None or record.status not in ("stopped", "failed"):
                return message_html("Stopped."), *[gr.skip()] * 5
            kept = kept_update(record)
            step = f" at step {record.step} of {record.total}" if record.total else ""
            info = generation_info(_read_config(record.folder), None, record.step, record.total) \
                if record.mode == "text-to-image" else ""
            return (message_html(f"Stopped{step}. Kept in {record.folder.name}.", "done"),
                    gr.update(value=kept.result, visible=True) if kept.result else gr.skip(),
                    kept.video or gr.skip(), kept.files or gr.skip(), info or gr.skip(), gr.update(visible=False))

        heavy = dict(concurrency_id=GPU, concurrency_limit=1, show_progress="hidden")
        quick = dict(queue=False, show_progress="hidden")
        # Claims go through the queue (so a refused one is an event error, never an HTTP 500) in
        # their own group, which never waits for the GPU.
        claiming = dict(concurrency_id="claims", concurrency_limit=None, show_progress="hidden", api_name=False)
        t2i_inputs = [t2i_claim] + [t2i[n] for n in t2i_names] + [t2i["image_prompt_files"]]
        t2i_out = [t2i_status, t2i_preview, t2i_result, t2i_video, t2i_files, t2i_info, t2i_seed]
        generate_fn = named(generate, [*t2i_names, "image_prompt_files"])
        claim_out = [t2i_status, t2i_claim, t2i_preview]
        run_evt = t2i["run"].click(claimed, None, claim_out, **claiming).success(
            generate_fn, t2i_inputs, t2i_out, api_name="generate", **heavy)
        submit_evt = t2i["prompts"].submit(claimed, None, claim_out, **claiming).success(
            generate_fn, t2i_inputs, t2i_out, api_name=False, **heavy)
        continue_evt = t2i_continue.click(claimed, None, claim_out, **claiming).success(
            continued, [t2i_claim, t2i_more], t2i_out, api_name=False, **heavy)
        shown_out = [t2i_preview, t2i_result, t2i_more_row, t2i_video, t2i_files]
        for event in (run_evt, submit_evt, continue_evt):
            event.then(shown, None, shown_out, **quick)
        t2i["stop"].click(lambda: message_html("Stopping…"), None, t2i_status, cancels=[run_evt, submit_evt,
                                                                                         continue_evt], **quick).then(
            stopped, None, [t2i_status, t2i_result, t2i_video, t2i_files, t2i_info, t2i_preview], **quick).then(
            shown, None, shown_out, **quick)
        t2i["random_seed"].click(lambda: new_seed(), None, t2i["seed"], **quick)
        t2i["reuse_seed"].click(lambda seed: gr.skip() if seed is None else seed, t2i_seed, t2i["seed"], **quick)
        preset_outputs = [t2i[n] for n in t2i_names] + [t2i["preset_info"], t2i_status]
        t2i["preset"].change(guarded(lambda name: _preset_update(name, studio, t2i_names), len(preset_outputs) - 1,
                                      len(preset_outputs)), t2i["preset"], preset_outputs, **quick)

        def status_after_stop(request: gr.Request) -> tuple:
            return stopped(request)[:1]

        anim_evt = anim["run"].click(claimed, None, [anim_status, anim_claim, anim_preview], **claiming).success(
            named(animate, anim_names), [anim_claim] + [anim[n] for n in anim_names],
            [anim_status, anim_preview, anim_video, anim_files], api_name="animate", **heavy)
        anim["stop"].click(lambda: message_html("Stopping…"), None, anim_status, cancels=[anim_evt], **quick).then(
            status_after_stop, None, [anim_status], **quick)

        smp_evt = smp_run.click(claimed, None, [smp_status, smp_claim, smp_preview], **claiming).success(
            named(sample, smp_names), [smp_claim] + [smp[n] for n in smp_names],
            [smp_status, smp_preview, smp_results, smp_video, smp_files], api_name="sample", **heavy)
        smp_stop.click(lambda: message_html("Stopping…"), None, smp_status, cancels=[smp_evt], **quick).then(
            status_after_stop, None, [smp_status], **quick)

        def latest_result(request: gr.Request) -> str | None:
            return str(studio.session(request).result or "") or None

        up_from.click(latest_result, None, up_input, **quick)
        up_names = ["image", "upscale_model", "upscale", "upscale_tile", "upscale_denoise", "upscale_alpha"]
        up_evt = up_run.click(claimed, None, [up_status, up_claim, gr.State()], **claiming).success(
            named(upscale, up_names), [up_claim, up_input, up_model, up_scale, up_tile, up_denoise, up_alpha],
            [up_status, up_result, up_files], api_name="upscale", **heavy)

        def hinted(kind: str, target: gr.components.Component) -> Callable[[str | None], tuple[str]]:
            """Says, before any button is pressed, how to get a model that is not installed."""
            def hint(value: str | None) -> tuple[str]:
                if not paths.open:
                    paths.check(value, "model")
                text = model_hint(kind, value, weights)
                return (error_html(text) if text else "",)
            return guarded(hint, 0, 1)

        menus = (("upscaler", up_model, up_hint), ("vqgan", t2i["vqgan"], t2i_hint),
                 ("transformer", t2i["prior"], t2i_hint), ("upscaler", t2i["upscale_model"], t2i_hint),
                 ("transformer", smp["model"], smp_hint), ("upscaler", smp["upscale_model"], smp_hint))
        for kind, menu, target in menus:
            menu.change(hinted(kind, target), menu, target, **quick)
        up_stop.click(lambda: message_html("Stopping…"), None, up_status, cancels=[up_evt], **quick).then(
            status_after_stop, None, [up_status], **quick)

        def my_runs(request: gr.Request) -> list[PastRun]:
            session = studio.session(request)
            return studio.runs_for(session.owner or session.key)

        def refresh(request: gr.Request) -> list[tuple[str, str]]:
            return [(str(run.image), run.caption) for run in my_runs(request)]

        def select(event: gr.SelectData, request: gr.Request) -> tuple:
            runs = my_runs(request)
            run = runs[event.index] if event.index < len(runs) else None
            if run is None:
                return "", None, None
            selected = {"mode": run.mode, "config": run.config, "folder": run.folder.name}
            return message_html(f"{run.title} — {run.mode}, {run.folder.name}"), run.config, selected

        def owner_of(request: gr.Request) -> str:
            session = studio.session(request)
            return session.owner or session.key

        def delete(selected: dict | None, request: gr.Request) -> tuple:
            if not selected:
                raise InputError("select one of your runs in the gallery first, then delete it.")
            session = studio.session(request)
            running = not session.finished.is_set() and session.folder is not None
            if running and session.folder.name == selected["folder"]:
                raise InputError("this run is still being made; stop it first, then delete it.")
            delete_run(studio.outputs_dir, selected["folder"], owner_of(request), studio.shared_gallery)
            return message_html(f"Deleted {selected['folder']}."), refresh(request), None, None

        def download(selected: dict | None, request: gr.Request) -> tuple:
            if not selected:
                raise InputError("select a run in the gallery first, then download it.")
            archive = zip_run(studio.outputs_dir, selected["folder"], owner_of(request), studio.shared_gallery)
            return message_html(f"{archive.name} is ready below."), str(archive)

        def register(owner: str | None, request: gr.Request) -> tuple[str, list[tuple[str, str]]]:
            """The browser's lasting id (local storage): made on its first visit, then its gallery."""
            owner = owner if owner and len(owner) == 32 and owner.isalnum() else uuid.uuid4().hex
            studio.session(request).owner = owner
            return owner, refresh(request)

        def load(selected: dict | None) -> tuple:
            if not selected:
                return (error_html("select a run in the gallery first, then load its settings."), gr.skip(),
                        *[gr.skip()] * (len(t2i_names) + len(smp_names)))
            if selected["mode"] == "sample":
                values = to_form(SampleConfig.from_dict(selected["config"]))
                return (message_html("Loaded into the Prior tab."), gr.Tabs(selected="prior"),
                        *[gr.skip()] * len(t2i_names), *[values.get(n, gr.skip()) for n in smp_names])
            values = to_form(GenerationConfig.from_dict(selected["config"]))
            return (message_html("Loaded into the Text to image tab."), gr.Tabs(selected="t2i"),
                    *[values.get(n, gr.skip()) for n in t2i_names], *[gr.skip()] * len(smp_names))

        gal_refresh.click(refresh, None, gallery, **quick)
        gal_delete.click(guarded(delete, 0, 4), gal_selected, [gal_title, gallery, gal_config, gal_selected], **quick)
        gal_zip.click(guarded(download, 0, 2), gal_selected, [gal_title, gal_download], **quick)
        gallery.select(select, None, [gal_title, gal_config, gal_selected], **quick)
        load_outputs = [gal_title, tabs, *[t2i[n] for n in t2i_names], *[smp[n] for n in smp_names]]
        gal_load.click(guarded(load, 0, len(load_outputs)), gal_selected, load_outputs, **quick)
        def png_read(path: str | None) -> tuple:
            if not path:
                return "", None, None
            settings = read_settings(paths.check_image(path, "PNG"))
            return message_html(settings.summary), settings.config, {"mode": settings.mode, "config": settings.config}

        png_input.change(guarded(png_read, 0, 3), png_input, [png_status, png_config, png_selected], **quick)
        png_load.click(guarded(load, 0, len(load_outputs)), png_selected,
                       [png_status, *load_outputs[1:]], **quick)
        for event in (run_evt, submit_evt, continue_evt, smp_evt, anim_evt):
            event.then(refresh, None, gallery, **quick)
        demo.load(register, owner, [owner, gallery], **quick)
        demo.load(None, None, None, js=KEYS_JS)
    return demo.queue(default_concurrency_limit=1, max_size=32)


def _checked_t2i(paths: PathPolicy, form: dict[str, Any]) -> dict[str, Any]:
    """The text-to-image form with every server path it names checked (see :class:`PathPolicy`)."""
    form = dict(form)
    for name, label in (("vqgan", "VQGAN"), ("vqgan_config", "VQGAN yaml"), ("prior", "prior"),
                        ("upscale_model", "upscaler")):
        form[name] = paths.check(form.get(name), label)
    form["init_image"] = paths.check_image(form.get("init_image"), "init image") or None
    form["image_prompts"] = paths.check_image_prompts(form.get("image_prompts"))
    form["clip_models"] = paths.check_clip_models(form.get("clip_models"))
    return form


def _checked_sample(paths: PathPolicy, form: dict[str, Any]) -> dict[str, Any]:
    """The prior form with every server path it names checked."""
    form = dict(form)
    for name, label in (("model", "prior"), ("transformer_config", "project yaml"), ("upscale_model", "upscaler")):
        form[name] = paths.check(form.get(name), label)
    for name, label in (("condition", "condition map"), ("complete", "image to complete")):
        form[name] = paths.check_image(form.get(name), label) or None
    return form


def _continuation(session: Any, more: int) -> tuple[GenerationConfig, Path]:
    """The config that continues this session's latest text-to-image run for ``more`` steps
    from its saved latent, and the run folder it continues."""
    record = session.record
    if record is None or record.mode != "text-to-image" or record.folder is None \
            or not (record.folder / LATENT_FILE).is_file():
        raise InputError("there is no image to continue yet; generate one (or stop a run) first.")
    if more < 1:
        raise InputError("give 1 or more steps to continue for.")
    plain = _read_config(record.folder)
    plain["steps"] = more
    plain["init"] = {**plain.get("init", {}), "init": "latent", "init_latent": str(record.folder)}
    return GenerationConfig.from_dict(plain), record.folder


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"the settings of {folder.name} cannot be read ({error}).") from None


def _guard(build: Callable[[], Any]) -> Any:
    """Config errors as one-sentence gr.Error messages."""
    try:
        return build()
    except GeneratorError as error:
        raise gr.Error(str(error), print_exception=False) from None


def _config(config_cls: type, form: dict[str, Any]) -> Any:
    form = {name: (str(value) if hasattr(value, "__fspath__") else value) for name, value in form.items()}
    return _guard(lambda: from_form(config_cls, form))


def _preset_config(name: str, studio: Studio) -> GenerationConfig:
    """A text-to-image preset; one that leaves the models alone keeps the app's models."""
    config = _guard(lambda: load_preset(name, kind="text-to-image").config())
    return config.replace(models=studio.models) if config.models == ModelsConfig() else config


def _preset_update(name: str, studio: Studio, names: Sequence[str]) -> tuple[Any, ...]:
    """The widgets a preset names, its description, and a status line; every other widget
    (the prompt above all) keeps what the user set."""
    preset = load_preset(name, kind="text-to-image")
    values = to_form(_preset_config(name, studio))
    named = preset_fields(GenerationConfig, preset.settings)
    changed = [n for n in names if n in named]
    note = f"Preset {name}: " + (", ".join(changed) + " set." if changed else "nothing to change.")
    return (*[values.get(n, gr.skip()) if n in named else gr.skip() for n in names], preset.description,
            message_html(note))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the VQGAN Studio web UI.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--shared-gallery", action="store_true",
                        help="every visitor's gallery shows every run (default: each browser sees its own)")
    parser.add_argument("--max-upscale-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
                        help=f"the largest image the Upscale tab makes (default {DEFAULT_MAX_MEGAPIXELS:g}; 0: no cap)")
    parser.add_argument("--out", default="outputs", metavar="DIR", help="where run folders go; the only files served")
    parser.add_argument("--preset", default="default", metavar="NAME|JSON",
                        help="the preset that fills the form at first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--vqgan", default=ModelsConfig().vqgan, metavar="NAME|PATH")
    parser.add_argument("--vqgan-config", default=None, metavar="YAML")
    parser.add_argument("--clip-model", dest="clip_models", action="append", nargs="+", metavar="ARG",
                        help="MODEL [PRETRAINED [WEIGHT]], repeatable (default: ViT-B-32 openai)")
    parser.add_argument("--lazy", action="store_true", help="load models on first use instead of at start")
    from generator.cli.common import add_weights_arguments

    add_weights_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, load the default models (unless --lazy) and serve the UI."""
    from generator.cli.common import configure_logging

    configure_logging()
    args = parse_args(argv)
    try:
        clips = tuple(clip_model_spec(values) for values in args.clip_models) if args.clip_models else None
        models = GenerationConfig.from_dict({"models": {"vqgan": args.vqgan, "vqgan_config": args.vqgan_config,
                                                        **({"clip_models": list(clips)} if clips else {})}}).models
        studio = Studio(outputs_dir=Path(args.out), models=models, device=args.device, weights_dir=args.weights_dir,
                        offline=args.offline, shared_gallery=args.shared_gallery)
        if not args.lazy:
            try:
                studio.text_to_image_for(models)
            except GeneratorError as error:
                logger.warning("%s The UI starts anyway; Generate will say the same until this is fixed.", error)
        # Beyond this machine, the path fields take registry names, weights-folder files and uploads only,
        # and image addresses are fetched from the public internet only.
        paths = PathPolicy.for_server(args.host, args.share, outputs_dir=args.out, weights_dir=args.weights_dir)
        paths.guard_fetches()
        demo = build_demo(studio=studio, preset=args.preset, paths=paths,
                          max_upscale_megapixels=args.max_upscale_megapixels)
    except GeneratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    Path(args.out).mkdir(parents=True, exist_ok=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, allowed_paths=[str(Path(args.out))],
                max_file_size=MAX_UPLOAD, show_error=True, css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
