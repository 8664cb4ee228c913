"""The Animate tab: zoom, pan and rotate animations and video restyles, the latest frame and
the video growing as frames arrive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from generator.animate.config import AnimationConfig
from generator.animate.mode import ANIMATE
from generator.text_to_image.tab import preset_config
from generator.webui.forms import to_form
from generator.webui.handlers import named, stream
from generator.webui.jobs import Update, animation_job
from generator.webui.tabs.page import CLAIMING, HEAVY, Page, TabParts, config_from
from generator.webui.widgets import animate_widgets

_OUTPUTS = ["status", "preview", "video", "files"]
_SHARED = ("width", "height", "cutn", "prompts", "steps")  # start from the text-to-image form's values
_MODELS = ("vqgan", "vqgan_config", "clip_models")


def build(page: Page, preset: str) -> TabParts:
    """Lay out the tab (inside a ``gr.Tab``) and wire its events. Size, cutouts, prompt and
    steps start as the text-to-image form's (from ``preset``), and animations use its models."""
    t2i_values = to_form(preset_config(preset, page.studio))
    values = to_form(AnimationConfig(models=page.studio.models))
    values.update({name: t2i_values[name] for name in _SHARED})
    anim = animate_widgets(values)
    status = gr.HTML(elem_id="animate-status")
    with gr.Row():
        preview = gr.Image(label="Latest frame", type="pil", interactive=False, format="png", height=380,
                           elem_id="animate-preview", visible=False)
        video = gr.Video(label="Video (grows as frames arrive)", interactive=False, height=380,
                         elem_id="animate-video", autoplay=True, loop=True)
    files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="animate-files")
    claim = gr.State(None)
    names = [n for n in anim if n not in ("run", "stop")]
    models = {name: t2i_values[name] for name in _MODELS}

    def animate(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = page.studio.session(request)

        def job() -> Iterator[Update]:
            form["prompt_at"] = [line.strip() for line in str(form["prompt_at"] or "").splitlines() if line.strip()]
            form["video_init"] = page.paths.check_image(form["video_init"], "video to restyle",
                                                        page.studio.may_read(request)) or None
            config = config_from(AnimationConfig, {**models, **form})
            return animation_job(page.studio, config, session)

        yield from stream(job, _OUTPUTS, session)

    run = anim["run"].click(page.claimed, None, [status, claim, preview], **CLAIMING).success(
        named(animate, names), [claim] + [anim[n] for n in names], [status, preview, video, files],
        api_name=ANIMATE.api, **HEAVY)
    page.stop_button(anim["stop"], status, [run])
    return TabParts({name: anim[name] for name in names}, names, values, [run])
