"""The web UI: ``python app.py`` serves a Gradio page on http://127.0.0.1:7860.

``build_demo(text_to_image)`` lays out the tabs (text to image, prior, upscale, gallery) over a
:class:`Studio`; ``main()`` parses the flags, loads the models and launches. Importing this
module loads no model. Widgets are named after config fields; the logic behind them is in
``generator/webui`` (jobs, forms, gallery), tested without a browser.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from generator.config import (
    INIT_MODES,
    OPTIMISERS,
    PRECISIONS,
    GenerationConfig,
    ModelsConfig,
    SampleConfig,
    UpscaleConfig,
    clip_model_spec,
    new_seed,
)
from generator.errors import GeneratorError
from generator.guidance.cutouts import AUGMENTATIONS
from generator.guidance.pipeline import TextToImage
from generator.presets import list_presets, load_preset
from generator.webui.forms import from_form, to_form
from generator.webui.gallery import list_runs
from generator.webui.jobs import Update, sample_job, text_to_image_job, upscale_job
from generator.webui.studio import Studio
from generator.weights.store import names_of_kind

logger = logging.getLogger("generator.app")
MAX_UPLOAD = "64mb"
# Results are often small (256 px): show them scaled up to the frame, with crisp pixels.
CSS = """
#preview img, #result img, #upscaled img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
"""
GPU = "gpu"  # every heavy event shares one queue slot: one job at a time on the GPU


def _widgets_text_to_image(values: dict[str, Any]) -> dict[str, gr.components.Component]:
    """The text-to-image form; returns widgets by config field name."""
    w: dict[str, gr.components.Component] = {}
    with gr.Row():
        w["prompts"] = gr.Textbox(values["prompts"], label="Prompt", scale=4, max_lines=3, elem_id="prompt",
                                  placeholder="city at night | neon:0.5 | blurry:-0.3   (Enter to generate)")
        w["preset"] = gr.Dropdown(list_presets(kind="text-to-image"), value="default", label="Preset", scale=1)
    with gr.Row():
        w["width"] = gr.Number(values["width"], label="Width (0: auto)", precision=0, minimum=0, maximum=4096)
        w["height"] = gr.Number(values["height"], label="Height (0: auto)", precision=0, minimum=0, maximum=4096)
        w["steps"] = gr.Slider(1, 2000, values["steps"], step=1, label="Steps", elem_id="steps")
        w["seed"] = gr.Number(values["seed"], label="Seed (-1: random)", precision=0, minimum=-1)
        w["random_seed"] = gr.Button("Random seed", scale=0, min_width=120)
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            w["image_prompts"] = gr.Textbox(values["image_prompts"], label="Image prompts (path:weight | ...)")
            w["image_prompt_files"] = gr.File(label="Image prompts (upload)", file_count="multiple",
                                              file_types=["image"])
            w["noise_prompts"] = gr.Textbox(values["noise_prompts"], label="Noise prompts (seed:weight | ...)")
            w["change_prompt_every"] = gr.Number(values["change_prompt_every"], label="Steps per ^ phrase (0: split)",
                                                 precision=0)
        with gr.Row():
            w["init"] = gr.Dropdown(list(INIT_MODES), value=values["init"], label="Start from")
            w["init_image"] = gr.Image(label="Init image", type="filepath", height=160)
            w["init_weight"] = gr.Number(values["init_weight"], label="Init weight (MSE toward the start)")
            w["init_weight_decay_steps"] = gr.Number(values["init_weight_decay_steps"],
                                                     label="Init weight reaches 0 at step", precision=0)
        with gr.Row():
            w["cutn"] = gr.Slider(1, 256, values["cutn"], step=1, label="Cutouts")
            w["cut_pow"] = gr.Number(values["cut_pow"], label="Cutout size power")
            w["noise_fac"] = gr.Number(values["noise_fac"], label="Cutout noise")
            w["augments"] = gr.CheckboxGroup(list(AUGMENTATIONS), value=list(values["augments"]), label="Augmentations")
        with gr.Row():
            w["optimiser"] = gr.Dropdown(list(OPTIMISERS), value=values["optimiser"], label="Optimiser")
            w["lr"] = gr.Number(values["lr"], label="Learning rate")
            w["tv_weight"] = gr.Number(values["tv_weight"], label="Smoothness (TV) weight")
            w["precision"] = gr.Dropdown(list(PRECISIONS), value=values["precision"], label="Precision")
        with gr.Row():
            w["save_every"] = gr.Number(values["save_every"], label="Preview/frame every N steps (0: none)",
                                        precision=0)
            w["video"] = gr.Checkbox(values["video"], label="Video (mp4)")
            w["gif"] = gr.Checkbox(values["gif"], label="Gif")
            w["fps"] = gr.Number(values["fps"], label="Frames per second", precision=0)
        with gr.Row():
            w["upscale"] = gr.Number(values["upscale"], label="Upscale factor (0: off)")
            w["upscale_model"] = gr.Dropdown(names_of_kind("upscaler"), value=values["upscale_model"], label="Upscaler",
                                             allow_custom_value=True)
            w["upscale_tile"] = gr.Number(values["upscale_tile"], label="Upscale tile", precision=0)
        with gr.Row():
            w["vqgan"] = gr.Textbox(values["vqgan"], label="VQGAN (registry name or file)")
            w["vqgan_config"] = gr.Textbox(values["vqgan_config"], label="VQGAN yaml (optional)")
            w["clip_models"] = gr.Textbox(values["clip_models"], label="CLIP models (MODEL PRETRAINED WEIGHT per line)",
                                          lines=2)
        with gr.Row():
            w["prior"] = gr.Textbox(values["prior"], label="Prior for 'Start from: prior'")
            w["prior_top_k"] = gr.Number(values["prior_top_k"], label="Prior top-k", precision=0)
            w["prior_top_p"] = gr.Number(values["prior_top_p"], label="Prior top-p")
            w["prior_temperature"] = gr.Number(values["prior_temperature"], label="Prior temperature")
    return w


def _widgets_sample(values: dict[str, Any]) -> dict[str, gr.components.Component]:
    """The prior-sampling form."""
    w: dict[str, gr.components.Component] = {}
    with gr.Row():
        w["model"] = gr.Dropdown(names_of_kind("transformer"), value=values["model"], label="Prior (registry or file)",
                                 allow_custom_value=True, scale=2)
        w["transformer_config"] = gr.Textbox(values["transformer_config"], label="Project yaml (optional)", scale=2)
        w["n"] = gr.Slider(1, 16, values["n"], step=1, label="Images")
        w["batch_size"] = gr.Slider(1, 16, values["batch_size"], step=1, label="Batch size")
    with gr.Row():
        w["width"] = gr.Number(values["width"], label="Width (0: trained size)", precision=0, minimum=0)
        w["height"] = gr.Number(values["height"], label="Height (larger: sliding window)", precision=0, minimum=0)
        w["top_k"] = gr.Number(values["top_k"], label="Top-k (0: off)", precision=0)
        w["top_p"] = gr.Number(values["top_p"], label="Top-p")
        w["temperature"] = gr.Number(values["temperature"], label="Temperature")
        w["seed"] = gr.Number(values["seed"], label="Seed (-1: random)", precision=0, minimum=-1)
    with gr.Row():
        w["class_label"] = gr.Number(values["class_label"], label="Class (class-conditional priors; -1: none)",
                                     precision=0)
        w["condition"] = gr.File(label="Condition map (segmentation or depth)", file_types=["image"])
        w["complete"] = gr.Image(label="Complete this image (optional)", type="filepath", height=160)
        w["keep"] = gr.Slider(0, 0.95, values["keep"], step=0.05, label="Keep this fraction")
    with gr.Row():
        w["save_every"] = gr.Number(values["save_every"], label="Preview every N rows (0: none)", precision=0)
        w["video"] = gr.Checkbox(values["video"], label="Video")
        w["use_cache"] = gr.Checkbox(values["use_cache"], label="Key/value cache")
        w["upscale"] = gr.Number(values["upscale"], label="Upscale factor (0: off)")
        w["upscale_model"] = gr.Dropdown(names_of_kind("upscaler"), value=values["upscale_model"], label="Upscaler",
                                         allow_custom_value=True)
    return w


def _named(handler: Callable[[dict[str, Any], gr.Request, gr.Progress], Iterator[tuple]],
           names: Sequence[str]) -> Callable[..., Iterator[tuple]]:
    """A Gradio handler with one parameter per widget name (the API then reads ``prompts``,
    ``steps``, ``cutn``...), passing ``handler`` the values as a dict."""

    def wrapper(*args: Any) -> Iterator[tuple]:
        *values, request, progress = args
        yield from handler(dict(zip(names, values, strict=True)), request, progress)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, kind) for name in names]
        + [inspect.Parameter("request", kind, annotation=gr.Request),
           inspect.Parameter("progress", kind, default=gr.Progress())])
    wrapper.__annotations__ = {"request": gr.Request}  # Gradio finds special parameters by type hint
    return wrapper


def _update_tuple(update: Update, names: Sequence[str]) -> tuple[Any, ...]:
    """The widget updates of an :class:`Update`, in the order of ``names``; gr.skip() leaves a widget."""
    values = {"status": update.status, "preview": update.preview, "result": update.result,
              "results": update.results, "video": update.video, "files": update.files}
    return tuple(gr.skip() if values[name] is None else values[name] for name in names)


def _stream(job: Iterator[Update], names: Sequence[str], progress: gr.Progress) -> Iterator[tuple[Any, ...]]:
    """Drive a job for Gradio: progress bar, notices, widget updates, errors as gr.Error.

    A Stop (or a closed browser tab) closes this generator at a ``yield``; ``closing`` then
    closes the job, which keeps what the run produced.
    """
    with contextlib.closing(job):
        try:
            for update in job:
                if update.progress is not None:
                    step, total, text = update.progress
                    progress((step, total), desc=text)
                if update.notice:
                    gr.Info(update.notice)
                yield _update_tuple(update, names)
        except GeneratorError as error:
            raise gr.Error(str(error), print_exception=False) from None


def build_demo(text_to_image: TextToImage | None = None, *, studio: Studio | None = None,
               outputs_dir: str | Path = "outputs", preset: str = "default") -> gr.Blocks:
    """The Gradio Blocks of the app. Nothing is loaded here; models load on first use.

    Args:
        text_to_image: an already-loaded text-to-image pipeline (tests pass tiny ones).
        studio: the models and outputs folder (built from ``text_to_image`` when not given).
        outputs_dir: where run folders go (when ``studio`` is not given).
        preset: the text-to-image preset whose values fill the form at first.
    """
    studio = studio or Studio(outputs_dir=Path(outputs_dir), text_to_image=text_to_image)
    t2i_values = to_form(_preset_config(preset, studio))
    sample_values = to_form(SampleConfig())
    # No usage analytics are sent: this is a local tool.
    with gr.Blocks(title="VQGAN Studio", analytics_enabled=False) as demo:
        gr.Markdown("## VQGAN Studio — VQGAN+CLIP, Taming Transformers priors, ESRGAN upscaling")
        with gr.Tabs() as tabs:
            with gr.Tab("Text to image", id="t2i"):
                t2i = _widgets_text_to_image(t2i_values)
                with gr.Row():
                    t2i_run = gr.Button("Generate", variant="primary", elem_id="generate")
                    t2i_stop = gr.Button("Stop", variant="stop", elem_id="stop")
                t2i_status = gr.Markdown(elem_id="status")
                with gr.Row():
                    t2i_preview = gr.Image(label="Preview", type="pil", elem_id="preview", interactive=False,
                                           format="png", height=420)
                    t2i_result = gr.Image(label="Result", type="filepath", elem_id="result", interactive=False,
                                          format="png", height=420)
                with gr.Row():
                    t2i_video = gr.Video(label="Video", interactive=False, height=420)
                    t2i_files = gr.File(label="Downloads", file_count="multiple", interactive=False)
            with gr.Tab("Prior", id="prior"):
                smp = _widgets_sample(sample_values)
                with gr.Row():
                    smp_run = gr.Button("Sample", variant="primary", elem_id="sample")
                    smp_stop = gr.Button("Stop", variant="stop")
                smp_status = gr.Markdown()
                with gr.Row():
                    smp_preview = gr.Image(label="Preview", type="pil", interactive=False, format="png", height=420)
                    smp_results = gr.Gallery(label="Samples", columns=4, interactive=False, format="png")
                with gr.Row():
                    smp_video = gr.Video(label="Video", interactive=False, height=420)
                    smp_files = gr.File(label="Downloads", file_count="multiple", interactive=False)
            with gr.Tab("Upscale", id="upscale"):
                with gr.Row():
                    up_input = gr.File(label="Image to upscale", file_types=["image"], elem_id="upscale-input")
                    up_from = gr.Button("Use the latest result", scale=0)
                with gr.Row():
                    up_model = gr.Dropdown(names_of_kind("upscaler"), value=UpscaleConfig().upscale_model,
                                           label="Upscaler (registry or file)", allow_custom_value=True)
                    up_scale = gr.Number(0, label="Scale (0: the model's)")
                    up_tile = gr.Number(256, label="Tile (0: whole image)", precision=0)
                    up_denoise = gr.Number(-1, label="Denoise 0..1 (-1: off)")
                    up_alpha = gr.Dropdown(["network", "resize"], value="network", label="Alpha")
                up_run = gr.Button("Upscale", variant="primary")
                up_status = gr.Markdown()
                up_result = gr.Image(label="Upscaled", type="filepath", interactive=False, format="png", height=480,
                                     elem_id="upscaled")
                up_files = gr.File(label="Download", file_count="multiple", interactive=False)
            with gr.Tab("Gallery", id="gallery"):
                gal_refresh = gr.Button("Refresh")
                gallery = gr.Gallery(label="Past runs (newest first)", columns=5, elem_id="gallery", interactive=False)
                gal_title = gr.Markdown()
                gal_config = gr.JSON(label="Settings")
                gal_load = gr.Button("Load these settings")
                gal_selected = gr.State(None)

        t2i_names = [n for n in t2i if n not in ("preset", "random_seed", "image_prompt_files")]
        smp_names = list(smp)
        t2i_outputs = ["status", "preview", "result", "video", "files"]
        smp_outputs = ["status", "preview", "results", "video", "files"]

        def generate(form: dict[str, Any], request: gr.Request, progress: gr.Progress) -> Iterator[tuple]:
            files = form.pop("image_prompt_files") or []
            if files:
                extra = " | ".join(str(f) for f in files)
                form["image_prompts"] = f"{form['image_prompts']} | {extra}" if form["image_prompts"] else extra
            config = _config(GenerationConfig, form)
            yield from _stream(text_to_image_job(studio, config, studio.session(request)), t2i_outputs, progress)

        def sample(form: dict[str, Any], request: gr.Request, progress: gr.Progress) -> Iterator[tuple]:
            config = _config(SampleConfig, form)
            yield from _stream(sample_job(studio, config, studio.session(request)), smp_outputs, progress)

        def upscale(form: dict[str, Any], request: gr.Request, progress: gr.Progress) -> Iterator[tuple]:
            path, model, scale, tile = form["image"], form["upscale_model"], form["upscale"], form["upscale_tile"]
            denoise, alpha = form["upscale_denoise"], form["upscale_alpha"]
            if not path:
                raise gr.Error("no image to upscale; upload one or use the latest result.")
            config = _guard(lambda: UpscaleConfig(upscale=scale or 0.0, upscale_model=model,
                                                  upscale_tile=int(tile or 0),
                                                  upscale_denoise=None if denoise is None or denoise < 0 else denoise,
                                                  upscale_alpha=alpha))
            yield from _stream(upscale_job(studio, str(path), config, studio.session(request)),
                               ["status", "result", "files"], progress)

        def stopped(request: gr.Request) -> tuple[str, Any]:
            """After Stop: Gradio cancels the run once the Stop click has returned, the job then
            keeps its latest image (within one step); wait for that and show it."""
            session = studio.session(request)
            session.finished.wait(timeout=60)
            if not (session.folder and session.result):
                return "Stopped.", gr.skip()
            return f"Stopped. Kept in {session.folder.name}.", str(session.result)

        heavy = dict(concurrency_id=GPU, concurrency_limit=1)
        t2i_inputs = [t2i[n] for n in t2i_names] + [t2i["image_prompt_files"]]
        t2i_out = [t2i_status, t2i_preview, t2i_result, t2i_video, t2i_files]
        generate_fn = _named(generate, [*t2i_names, "image_prompt_files"])
        run_evt = t2i_run.click(generate_fn, t2i_inputs, t2i_out, api_name="generate", **heavy)
        submit_evt = t2i["prompts"].submit(generate_fn, t2i_inputs, t2i_out, api_name=False, **heavy)
        t2i_stop.click(lambda: "Stopping…", None, t2i_status, cancels=[run_evt, submit_evt], queue=False).then(
            stopped, None, [t2i_status, t2i_result], queue=False)
        t2i["random_seed"].click(lambda: new_seed(), None, t2i["seed"], queue=False)
        t2i["preset"].change(lambda name: _preset_values(name, studio, t2i_names), t2i["preset"],
                             [t2i[n] for n in t2i_names], queue=False)

        smp_evt = smp_run.click(_named(sample, smp_names), [smp[n] for n in smp_names],
                                [smp_status, smp_preview, smp_results, smp_video, smp_files],
                                api_name="sample", **heavy)
        smp_stop.click(lambda: "Stopping…", None, smp_status, cancels=[smp_evt], queue=False).then(
            stopped, None, [smp_status, smp_preview], queue=False)

        def latest_result(request: gr.Request) -> str | None:
            return str(studio.session(request).result or "") or None

        up_from.click(latest_result, None, up_input, queue=False)
        up_names = ["image", "upscale_model", "upscale", "upscale_tile", "upscale_denoise", "upscale_alpha"]
        up_run.click(_named(upscale, up_names), [up_input, up_model, up_scale, up_tile, up_denoise, up_alpha],
                     [up_status, up_result, up_files], api_name="upscale", **heavy)

        def refresh() -> list[tuple[str, str]]:
            return [(str(run.image), run.caption) for run in list_runs(studio.outputs_dir)]

        def select(event: gr.SelectData) -> tuple:
            runs = list_runs(studio.outputs_dir)
            run = runs[event.index] if event.index < len(runs) else None
            if run is None:
                return "", None, None
            selected = {"mode": run.mode, "config": run.config}
            return f"**{run.title}** — {run.mode}, `{run.folder.name}`", run.config, selected

        def load(selected: dict | None) -> tuple:
            if not selected:
                raise gr.Error("select a run in the gallery first.")
            if selected["mode"] == "sample":
                values = to_form(_guard(lambda: SampleConfig.from_dict(selected["config"])))
                return (gr.Tabs(selected="prior"), *[gr.skip()] * len(t2i_names),
                        *[values.get(n, gr.skip()) for n in smp_names])
            values = to_form(_guard(lambda: GenerationConfig.from_dict(selected["config"])))
            return (gr.Tabs(selected="t2i"), *[values.get(n, gr.skip()) for n in t2i_names],
                    *[gr.skip()] * len(smp_names))

        gal_refresh.click(refresh, None, gallery, queue=False)
        gallery.select(select, None, [gal_title, gal_config, gal_selected], queue=False)
        gal_load.click(load, gal_selected, [tabs, *[t2i[n] for n in t2i_names], *[smp[n] for n in smp_names]],
                       queue=False)
        for event in (run_evt, submit_evt, smp_evt):
            event.then(refresh, None, gallery, queue=False)
        demo.load(refresh, None, gallery, queue=False)
    return demo.queue(default_concurrency_limit=1, max_size=32)


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


def _preset_values(name: str, studio: Studio, names: Sequence[str]) -> list[Any]:
    values = to_form(_preset_config(name, studio))
    return [values.get(n, gr.skip()) for n in names]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the VQGAN Studio web UI.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
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
                        offline=args.offline)
        if not args.lazy:
            try:
                studio.text_to_image_for(models)
            except GeneratorError as error:
                logger.warning("%s The UI starts anyway; Generate will say the same until this is fixed.", error)
        demo = build_demo(studio=studio, preset=args.preset)
    except GeneratorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    Path(args.out).mkdir(parents=True, exist_ok=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, allowed_paths=[str(Path(args.out))],
                max_file_size=MAX_UPLOAD, show_error=True, css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
