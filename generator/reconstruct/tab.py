"""The Reconstruct tab: an upload through a VQGAN and back, before and after side by side,
with its PSNR and the codes it used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from generator.errors import InputError
from generator.reconstruct.config import ReconstructConfig
from generator.reconstruct.mode import RECONSTRUCT
from generator.reconstruct.pipeline import Reconstructor
from generator.webui.handlers import named, stream
from generator.webui.jobs import Update, pooled, present_run
from generator.webui.studio import Session, Studio
from generator.webui.tabs.page import CLAIMING, Page, TabParts, config_from, run_controls
from generator.webui.widgets import models_menu

_NAMES = ["image", "vqgan", "max_side"]
_OUTPUTS = ["status", "compare", "files"]


def build(page: Page, preset: str) -> TabParts:
    """Lay out the tab (inside a ``gr.Tab``) and wire its events (``preset`` does not apply)."""
    with gr.Row():
        vqgan = models_menu("vqgan", page.studio.models.vqgan, "VQGAN", page.studio.weights_dir,
                            elem_id="reconstruct-vqgan")
        max_side = gr.Number(ReconstructConfig.max_side, label="Longest side (px)", precision=0, minimum=16,
                             maximum=4096)
    run_button, stop_button, hint, status = run_controls(RECONSTRUCT.title, RECONSTRUCT.api)
    with gr.Row():
        image = gr.Image(label="Image", type="filepath", height=360, sources=["upload", "clipboard"],
                         elem_id="reconstruct-input")
        compare = gr.ImageSlider(label="Input / reconstruction", type="filepath", interactive=False, height=360,
                                 elem_id="reconstructed")
    files = gr.File(label="Downloads", file_count="multiple", interactive=False)
    claim = gr.State(None)

    def reconstruct(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = page.studio.session(request)

        def job() -> Iterator[Update]:
            path = page.paths.check_image(form["image"], "image to reconstruct", page.studio.may_read(request))
            if not path:
                raise InputError("there is no image to reconstruct; upload one.")
            config = config_from(ReconstructConfig, {"image": path, "vqgan": page.paths.check(form["vqgan"], "VQGAN"),
                                                     "max_side": int(form["max_side"] or ReconstructConfig.max_side)})
            return reconstruct_job(page.studio, config, session)

        yield from stream(job, _OUTPUTS, session)

    run = run_button.click(page.claimed, None, [status, claim, gr.State()], **CLAIMING).success(
        named(reconstruct, _NAMES), [claim, image, vqgan, max_side], [status, compare, files],
        api_name=RECONSTRUCT.api, **page.heavy)
    page.hint_menus((("vqgan", vqgan),), hint)
    page.stop_button(stop_button, status, [run])
    return TabParts({}, [], {}, [run])


@pooled(RECONSTRUCT.name)
def reconstruct_job(studio: Studio, config: ReconstructConfig, session: Session) -> Iterator[Update]:
    """Reconstruct into a run folder; the final update shows input and reconstruction side by
    side with the PSNR and the codes used."""
    with session.running():
        yield Update(status="loading the VQGAN…")
        reconstructor = Reconstructor.from_workbench(config, studio.bench)
        for update in present_run(reconstructor.run(config), studio, session):
            record = session.record
            if update.result is not None and record is not None and record.done is not None:
                assert record.folder is not None
                timings = record.done.timings
                update.results = [str(record.folder / "input.png"), update.result]
                update.status = (f"PSNR {timings['psnr']:.1f} dB · {timings['codes_used']:.0f} of "
                                 f"{timings['codes']:.0f} codes used · {record.folder.name}")
            yield update
