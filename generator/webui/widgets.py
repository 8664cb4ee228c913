"""The web UI's forms as Gradio widgets, named after config fields (``cutn`` for
``cutouts.cutn``) so :mod:`generator.webui.forms` maps them to configs; ``app.py`` places them
in its tabs and wires their events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from generator.animate.mode import ANIMATE
from generator.config import AUGMENTATION_NAMES, INIT_MODES, OPTIMISERS, PRECISIONS
from generator.errors import GeneratorError
from generator.presets import list_presets, load_preset
from generator.text_to_image.mode import TEXT_TO_IMAGE
from generator.webui.catalogue import SEPARATOR, model_choices


def models_menu(kind: str, value: str | None, label: str, weights: Any, **kwargs: Any) -> gr.Dropdown:
    """A model menu: installed models first, then files in the weights folder, then registry
    models that would download; a path typed in stays possible. A ``value`` the list lacks (a
    checkpoint outside the weights folder given as ``--vqgan``, another tool's name for a
    registry file) is listed first, so the menu shows it selected."""
    menu = gr.Dropdown(_menu_options(kind, value, weights), value=value or None, label=label, allow_custom_value=True,
                       **kwargs)
    refresh_on_focus(menu, lambda: _menu_options(kind, value, weights))
    return menu


def refresh_on_focus(menu: gr.Dropdown, options: Any) -> None:
    """List ``options()`` afresh each time ``menu`` is opened: a model trained in the Train tab,
    or a file put into the weights folder, is in every menu without reloading the page."""
    menu.focus(lambda: gr.update(choices=options()), None, menu, queue=False, show_progress="hidden", api_name=False)


def _menu_options(kind: str, value: str | None, weights: Any) -> list[tuple[str, str]]:
    options = model_choices(kind, weights)
    if value and value not in (choice for _, choice in options):
        options.insert(0, (f"{Path(value).name or value}{SEPARATOR}given at start", value))
    return options


def text_to_image_widgets(values: dict[str, Any], preset: str, weights: Any) -> dict[str, gr.components.Component]:
    """The text-to-image form and its buttons; returns widgets by config field name."""
    w: dict[str, gr.components.Component] = {}
    with gr.Row(equal_height=True):
        w["prompts"] = gr.Textbox(values["prompts"], label="Prompt", scale=4, max_lines=3, elem_id="prompt",
                                  placeholder="city at night | neon:0.5 | blurry:-0.3   (Enter to generate)")
        with gr.Column(scale=1, min_width=150, elem_id="run-buttons"):
            w["run"] = gr.Button("Generate", variant="primary", elem_id="generate")
            w["stop"] = gr.Button("Stop", variant="stop", elem_id="stop")
    with gr.Row():
        presets: list[Any] = list_presets(kind=TEXT_TO_IMAGE.name)
        if preset not in presets:  # a preset file given to app.py --preset
            presets.append((Path(preset).stem, preset))
        w["preset"] = gr.Dropdown(presets, value=preset, label="Preset", scale=1, elem_id="preset")
        w["preset_info"] = gr.Markdown(load_preset_description(preset), elem_id="preset-info")
    with gr.Row():
        w["width"] = gr.Number(values["width"], label="Width (0: auto)", precision=0, minimum=0, maximum=4096)
        w["height"] = gr.Number(values["height"], label="Height (0: auto)", precision=0, minimum=0, maximum=4096)
        w["steps"] = gr.Slider(1, 2000, values["steps"], step=1, label="Steps", elem_id="steps")
        w["seed"] = gr.Number(values["seed"], label="Seed (-1: random)", precision=0, minimum=-1, elem_id="seed")
        w["images"] = gr.Number(1, label="Images (seed, seed+1, …)", precision=0, minimum=1, maximum=64,
                                elem_id="images")
        with gr.Column(scale=0, min_width=130):
            w["random_seed"] = gr.Button("Random seed", size="sm")
            w["reuse_seed"] = gr.Button("Reuse last seed", size="sm", elem_id="reuse-seed")
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
            w["variation_seed"] = gr.Number(values["variation_seed"], label="Variation seed (-1: none)", precision=0,
                                            minimum=-1, elem_id="variation-seed")
            w["variation_strength"] = gr.Number(values["variation_strength"], minimum=0, maximum=1,
                                                label="Variation strength (0: the seed's image, 1: the variation "
                                                      "seed's start; empty: none)", elem_id="variation-strength")
        with gr.Row():
            w["cutn"] = gr.Slider(1, 256, values["cutn"], step=1, label="Cutouts")
            w["cut_pow"] = gr.Number(values["cut_pow"], label="Cutout size power")
            w["noise_fac"] = gr.Number(values["noise_fac"], label="Cutout noise")
            w["augments"] = gr.CheckboxGroup(list(AUGMENTATION_NAMES), value=list(values["augments"]),
                                             label="Augmentations")
        with gr.Row():
            w["optimiser"] = gr.Dropdown(list(OPTIMISERS), value=values["optimiser"], label="Optimiser")
            w["lr"] = gr.Number(values["lr"], label="Learning rate")
            w["tv_weight"] = gr.Number(values["tv_weight"], label="Smoothness (TV) weight")
            w["precision"] = gr.Dropdown(list(PRECISIONS), value=values["precision"], label="Precision")
        with gr.Row():
            w["save_every"] = gr.Number(values["save_every"], label="Preview (and frame) every N steps (0: none)",
                                        precision=0, elem_id="save-every")
            w["video"] = gr.Checkbox(values["video"], label="Video (mp4)")
            w["gif"] = gr.Checkbox(values["gif"], label="Gif")
            w["fps"] = gr.Number(values["fps"], label="Frames per second", precision=0)
        with gr.Row():
            w["upscale"] = gr.Number(values["upscale"], label="Upscale factor (0: off)")
            w["upscale_model"] = models_menu("upscaler", values["upscale_model"], "Upscaler", weights)
            w["upscale_tile"] = gr.Number(values["upscale_tile"], label="Upscale tile", precision=0)
            w["seamless"] = gr.Dropdown([("off", ""), ("x: wraps left to right", "x"), ("y: wraps top to bottom", "y"),
                                         ("xy: tiles both ways", "xy")], value=values["seamless"],
                                        label="Seamless tile", elem_id="seamless")
        with gr.Row():
            w["vqgan"] = models_menu("vqgan", values["vqgan"], "VQGAN", weights, elem_id="vqgan")
            w["vqgan_config"] = gr.Textbox(values["vqgan_config"], label="VQGAN yaml (optional)")
            w["clip_models"] = gr.Textbox(values["clip_models"], label="CLIP models (MODEL PRETRAINED WEIGHT per line)",
                                          lines=2)
        with gr.Row():
            w["prior"] = models_menu("transformer", values["prior"], "Prior for 'Start from: prior'", weights)
            w["prior_top_k"] = gr.Number(values["prior_top_k"], label="Prior top-k", precision=0)
            w["prior_top_p"] = gr.Number(values["prior_top_p"], label="Prior top-p")
            w["prior_temperature"] = gr.Number(values["prior_temperature"], label="Prior temperature")
    return w


def animate_widgets(values: dict[str, Any]) -> dict[str, gr.components.Component]:
    """The animation form (its models are those of the text-to-image form's Advanced section)."""
    w: dict[str, gr.components.Component] = {}
    with gr.Row(equal_height=True):
        w["prompts"] = gr.Textbox(values["prompts"], label="Prompt (^ separates story phrases)", scale=4,
                                  max_lines=3, elem_id="animate-prompt")
        with gr.Column(scale=1, min_width=150):
            w["run"] = gr.Button(ANIMATE.title, variant="primary", elem_id=ANIMATE.api)
            w["stop"] = gr.Button("Stop", variant="stop", elem_id="animate-stop")
    with gr.Row():
        w["frames"] = gr.Number(values["frames"] or 60, label="Frames", precision=0, minimum=1, elem_id="frames")
        w["steps"] = gr.Number(values["steps"], label="Steps of the first frame", precision=0, minimum=0,
                               elem_id="first-steps")
        w["steps_per_frame"] = gr.Number(values["steps_per_frame"], label="Steps per frame", precision=0, minimum=0,
                                         elem_id="steps-per-frame")
        w["width"] = gr.Number(values["width"], label="Width (0: auto)", precision=0, minimum=0)
        w["height"] = gr.Number(values["height"], label="Height (0: auto)", precision=0, minimum=0)
        w["seed"] = gr.Number(values["seed"], label="Seed (-1: random)", precision=0, minimum=-1)
    with gr.Row():
        w["zoom"] = gr.Textbox(values["zoom"], label="Zoom per frame (1.02 or 0:1.0, 60:1.04)", elem_id="zoom")
        w["angle"] = gr.Textbox(values["angle"], label="Degrees per frame")
        w["translate_x"] = gr.Textbox(values["translate_x"], label="Pan x (pixels per frame)")
        w["translate_y"] = gr.Textbox(values["translate_y"], label="Pan y (pixels per frame)")
        w["smooth"] = gr.Checkbox(values["smooth"], label="Ease between keyframes")
    with gr.Accordion("Sound: motion that follows the music", open=False):
        with gr.Row():
            w["audio"] = gr.Audio(label="Sound (its features drive expressions such as 1 + 0.04*bass; the video "
                                        "gets it)", type="filepath", sources=["upload"], elem_id="animate-audio")
            with gr.Column():
                gr.Markdown("A motion value may be an expression of `t` (seconds), `frame` and the sound's `loudness`, "
                            "`bass`, `mid`, `treble` and `onset` (each 0 to 1), with + - * / `**`, `sin`, `cos`, "
                            "`abs`, `min`, `max` and `clip(x, lo, hi)`: zoom `1 + 0.04*bass`, degrees `2*onset`.")
                w["plot"] = gr.Button("Plot the motion and the sound", elem_id="animate-plot-button")
        with gr.Row():
            w["motion_plot"] = gr.LinePlot(x="frame", y="value", color="series", label="Motion per frame",
                                           elem_id="animate-plot", visible=False)
            w["sound_plot"] = gr.LinePlot(x="frame", y="value", color="series", label="Sound per frame (0 to 1)",
                                          elem_id="animate-sound-plot", y_lim=[0, 1], visible=False)
    with gr.Accordion("Prompts at frames, coherence, restyle, video", open=False):
        with gr.Row():
            w["prompt_at"] = gr.Textbox("\n".join(values["prompt_at"] or ()), lines=3,
                                        label="Prompts at frames (FRAME=PROMPT per line)")
            w["change_prompt_every"] = gr.Number(values["change_prompt_every"], precision=0,
                                                 label="Frames per ^ phrase (0: split over the frames)")
            w["frame_init_weight"] = gr.Number(values["frame_init_weight"], label="Coherence (MSE to the moved frame)")
        with gr.Row():
            w["video_init"] = gr.Video(label="Video to restyle (optional)", sources=["upload"], height=200)
            w["every"] = gr.Number(values["every"], label="Every Nth input frame", precision=0, minimum=1)
            flows = [("DIS optical flow", "dis"), ("Farneback optical flow", "farneback"),
                     ("RAFT network (raft_small weights)", "raft"), ("off", "off")]
            w["flow"] = gr.Dropdown(flows, value=values["flow"], label="Follow the video's motion", elem_id="flow",
                                    info="Each frame starts from the previous one warped by the input's motion, so "
                                         "textures stay put")
            w["flow_weight"] = gr.Number(values["flow_weight"], label="Temporal consistency weight (0: off)",
                                         minimum=0, elem_id="flow-weight")
            w["blend"] = gr.Slider(0, 1, values["blend"], step=0.05, label="Blend with the previous output (flow off)")
        with gr.Row():
            w["fps"] = gr.Number(values["fps"], label="Frames per second", precision=0, minimum=1)
            w["interpolate"] = gr.Number(values["interpolate"], label="Interpolate ×N", precision=0, minimum=1)
            w["video_length"] = gr.Number(values["video_length"], label="Video length in seconds (0: from fps)")
            w["cutn"] = gr.Slider(1, 256, values["cutn"], step=1, label="Cutouts")
    return w


def sample_widgets(values: dict[str, Any], weights: Any) -> dict[str, gr.components.Component]:
    """The prior-sampling form."""
    w: dict[str, gr.components.Component] = {}
    with gr.Row():
        w["model"] = models_menu("transformer", values["model"], "Prior", weights, scale=2, elem_id="sample-model")
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
        w["mask"] = gr.Image(label="Mask: resample where white (optional; Keep is then ignored)", type="filepath",
                             image_mode=None, height=160)  # image_mode None: the upload as it is, alpha kept
        w["mask_blur"] = gr.Number(values["mask_blur"], label="Mask blur (pixels)", minimum=0)
    with gr.Row():
        w["save_every"] = gr.Number(values["save_every"], label="Preview every N rows (0: none)", precision=0)
        w["video"] = gr.Checkbox(values["video"], label="Video")
        w["use_cache"] = gr.Checkbox(values["use_cache"], label="Key/value cache")
        w["upscale"] = gr.Number(values["upscale"], label="Upscale factor (0: off)")
        w["upscale_model"] = models_menu("upscaler", values["upscale_model"], "Upscaler", weights)
    return w


def load_preset_description(name: str) -> str:
    """The description of a preset, for the line beside the preset menu."""
    try:
        return load_preset(name, kind=TEXT_TO_IMAGE.name).description
    except GeneratorError as error:
        return str(error)
