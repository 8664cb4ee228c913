"""The Animate tab: zoom, pan and rotate animations and video restyles, the latest frame and
the video growing as frames arrive; a plot of the motion and the sound's features per frame."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from generator.animate.config import AnimationConfig
from generator.animate.mode import ANIMATE
from generator.animate.pipeline import plan_timing
from generator.text_to_image.tab import preset_config
from generator.webui.forms import to_form
from generator.webui.handlers import guarded, named, stream
from generator.webui.jobs import Update, animation_job
from generator.webui.tabs.page import CLAIMING, QUICK, Page, TabParts, config_from
from generator.webui.widgets import animate_widgets

_OUTPUTS = ["status", "preview", "video", "files"]
_SHARED = ("width", "height", "cutn", "prompts", "steps")  # start from the text-to-image form's values
_MODELS = ("vqgan", "vqgan_config", "clip_models")
_NOT_SETTINGS = ("run", "stop", "plot", "motion_plot", "sound_plot")
MOTION_SERIES = ("zoom", "angle", "translate_x", "translate_y")


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
    names = [n for n in anim if n not in _NOT_SETTINGS]
    models = {name: t2i_values[name] for name in _MODELS}

    def animate(claim: str | None, form: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        session = page.studio.session(request)

        def job() -> Iterator[Update]:
            return animation_job(page.studio, form_config(form, request), session)

        yield from stream(job, _OUTPUTS, session)

    def form_config(form: dict[str, Any], request: gr.Request) -> AnimationConfig:
        """The config of the form, its files checked (an upload or the visitor's own)."""
        form = dict(form)
        form["prompt_at"] = [line.strip() for line in str(form["prompt_at"] or "").splitlines() if line.strip()]
        may_read = page.studio.may_read(request)
        form["video_init"] = page.paths.check_image(form["video_init"], "video to restyle", may_read) or None
        form["audio"] = page.paths.check_image(form.get("audio"), "sound", may_read) or None
        return config_from(AnimationConfig, {**models, **form})

    def plot(*args: Any) -> tuple:
        """The plot of the form's motion and sound (after the form's values, the request)."""
        *form_values, request = args
        motion, sound = motion_tables(form_config(dict(zip(names, form_values, strict=True)), request))
        low, high = float(motion["value"].min()), float(motion["value"].max())
        margin = max((high - low) * 0.1, 0.01)
        return ("", gr.update(value=motion, y_lim=[low - margin, high + margin], visible=True),
                gr.update(value=sound, visible=not sound.empty))

    plot.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
        + [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)])
    plot.__annotations__ = {"request": gr.Request}  # Gradio finds special parameters by type hint
    anim["plot"].click(guarded(plot, 0, 3), [anim[n] for n in names],
                       [status, anim["motion_plot"], anim["sound_plot"]], api_name=False, **QUICK)

    run = anim["run"].click(page.claimed, None, [status, claim, preview], **CLAIMING).success(
        named(animate, names), [claim] + [anim[n] for n in names], [status, preview, video, files],
        api_name=ANIMATE.api, **page.heavy)
    page.stop_button(anim["stop"], status, [run])
    return TabParts({name: anim[name] for name in names}, names, values, [run])


def motion_tables(config: AnimationConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the plots draw, rows ``(frame, value, series)`` at every frame of ``config``: the
    motion settings that change (zoom alone when none does), and the sound's features (empty
    without sound).

    Raises:
        InputError: a bad keyframe or expression, an unreadable video or sound.
    """
    timing = plan_timing(config)
    motion_rows, sound_rows = [], []
    for frame in range(timing.frames):
        motion = timing.schedule.at(frame)
        motion_rows += [(frame, float(getattr(motion, name)), name) for name in MOTION_SERIES]
        sound_rows += [(frame, value, name) for name, value in timing.schedule.features_at(frame).items()]
    motion = pd.DataFrame(motion_rows, columns=["frame", "value", "series"])
    varying = motion.groupby("series")["value"].transform(lambda values: values.nunique() > 1)
    motion = motion[varying | (~varying.any() & (motion["series"] == "zoom"))].reset_index(drop=True)
    return motion, pd.DataFrame(sound_rows, columns=["frame", "value", "series"])
