"""The Prior tab: a Taming Transformers prior samples images (unconditioned, by class, from a
condition map or completing an image), shown as a gallery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from generator.config import SampleConfig
from generator.sample.mode import SAMPLE
from generator.webui.forms import to_form
from generator.webui.handlers import named, stream
from generator.webui.jobs import sample_job
from generator.webui.tabs.page import CLAIMING, Page, TabParts, config_from, run_controls
from generator.webui.widgets import sample_widgets

_OUTPUTS = ["status", "preview", "results", "video", "files"]


def build(page: Page, preset: str) -> TabParts:
    """Lay out the tab (inside a ``gr.Tab``) and wire its events (``preset``, a text-to-image
    preset, does not apply)."""
    values = to_form(SampleConfig())
    smp = sample_widgets(values, page.studio.weights_dir)
    run_button, stop_button, hint, status = run_controls(SAMPLE.title, SAMPLE.api)
    with gr.Row():
        preview = gr.Image(label="Preview", type="pil", interactive=False, format="png", height=420, visible=False)
        results = gr.Gallery(label="Samples", columns=4, interactive=False, format="png")
    with gr.Row():
        video = gr.Video(label="Video", interactive=False, height=420)
        files = gr.File(label="Downloads", file_count="multiple", interactive=False)
    claim = gr.State(None)
    names = list(smp)

    def sample(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = page.studio.session(request)
        may_read = page.studio.may_read(request)
        yield from stream(lambda: sample_job(page.studio, config_from(SampleConfig,
                                                                      page.paths.check_sample_form(form, may_read)),
                                             session), _OUTPUTS, session)

    run = run_button.click(page.claimed, None, [status, claim, preview], **CLAIMING).success(
        named(sample, names), [claim] + [smp[n] for n in names], [status, preview, results, video, files],
        api_name=SAMPLE.api, **page.heavy)
    page.stop_button(stop_button, status, [run])
    page.hint_menus((("transformer", smp["model"]), ("upscaler", smp["upscale_model"])), hint)
    return TabParts(smp, names, values, [run])
