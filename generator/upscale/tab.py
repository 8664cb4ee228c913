"""The Upscale tab: ESRGAN on an upload or the latest result, before and after side by side."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from generator.config import UpscaleConfig
from generator.errors import InputError
from generator.upscale.mode import UPSCALE
from generator.webui.handlers import guarded, named, stream
from generator.webui.jobs import Update, upscale_input_job
from generator.webui.tabs.page import CLAIMING, QUICK, Page, TabParts, run_controls
from generator.webui.widgets import models_menu

_NAMES = ["image", "upscale_model", "upscale", "upscale_tile", "upscale_denoise", "upscale_alpha", "upscale_seamless"]
SEAMLESS_CHOICES = ["off", "x", "y", "xy"]  # "off" is upscale_seamless ""


def upscale_config(form: dict[str, Any], model: str) -> UpscaleConfig:
    """The :class:`UpscaleConfig` of the tab's widget values (named as in ``_NAMES``), with the
    checked ``model`` path."""
    denoising = form["upscale_denoise"]
    seamless = form.get("upscale_seamless") or "off"
    return UpscaleConfig(upscale=form["upscale"] or 0.0, upscale_model=model,
                         upscale_tile=int(form["upscale_tile"] or 0),
                         upscale_denoise=None if denoising is None or denoising < 0 else denoising,
                         upscale_alpha=form["upscale_alpha"], upscale_seamless="" if seamless == "off" else seamless)


def build(page: Page, preset: str) -> TabParts:
    """Lay out the tab (inside a ``gr.Tab``) and wire its events (``preset`` does not apply)."""
    with gr.Row():
        model = models_menu("upscaler", UpscaleConfig().upscale_model, "Upscaler", page.studio.weights_dir,
                            elem_id="upscale-model")
        scale = gr.Number(0, label="Scale (0: the model's)")
        tile = gr.Number(256, label="Tile (0: whole image)", precision=0)
        denoise = gr.Number(-1, label="Denoise 0..1 (-1: off)")
        alpha = gr.Dropdown(["network", "resize"], value="network", label="Alpha")
        seamless = gr.Dropdown(SEAMLESS_CHOICES, value="off", label="Seamless (wrap around)")
    run_button, stop_button, hint, status = run_controls(UPSCALE.title, UPSCALE.api)
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Image to upscale", type="filepath", height=420, elem_id="upscale-input",
                             sources=["upload", "clipboard"])
            from_latest = gr.Button("Use the latest result", size="sm")
        compare = gr.ImageSlider(label="Before / after", type="filepath", interactive=False, height=420,
                                 elem_id="upscaled")
    files = gr.File(label="Download", file_count="multiple", interactive=False)
    claim = gr.State(None)

    def upscale(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = page.studio.session(request)

        def job() -> Iterator[Update]:
            path = page.paths.check_image(form["image"], "image to upscale", page.studio.may_read(request))
            if not path:
                raise InputError("there is no image to upscale; upload one or use the latest result.")
            config = upscale_config(form, page.paths.check(form["upscale_model"], "upscaler"))
            return upscale_input_job(page.studio, config, session, image=path,
                                     max_megapixels=page.max_upscale_megapixels)

        yield from stream(job, ["status", "compare", "files"], session)

    def latest_result(request: gr.Request) -> tuple:
        return (str(page.studio.session(request).result or "") or None,)

    from_latest.click(guarded(latest_result, None, 1), None, image, api_name="latest_result", **QUICK)
    run = run_button.click(page.claimed, None, [status, claim, gr.State()], **CLAIMING).success(
        named(upscale, _NAMES), [claim, image, model, scale, tile, denoise, alpha, seamless], [status, compare, files],
        api_name=UPSCALE.api, **page.heavy)
    page.hint_menus((("upscaler", model),), hint)
    page.stop_button(stop_button, status, [run])
    return TabParts({}, [], {}, [run])
