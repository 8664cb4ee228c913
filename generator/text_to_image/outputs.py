"""The files of a text-to-image run: ``final.png`` (its config embedded), ``config.json``,
``latent.safetensors`` to continue from, and upscaled copies; a stopped run keeps the image it
reached with a config that repeats it."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from generator.config import UpscaleConfig
from generator.config_schema import build_config
from generator.events import Done
from generator.io.outputs import RunWriter, png_text
from generator.runs import GenerationRun, RunState
from generator.text_to_image.prompts import parse_story

logger = logging.getLogger(__name__)


class TextToImageOutputs:
    """``final.png`` (config embedded) + ``config.json`` + ``latent.safetensors`` (+ ``final_x4.png``)."""

    @staticmethod
    def finish(writer: RunWriter, done: Done, state: RunState) -> Path:
        final = writer.write_final(done.images[0], config=done.config, prompt=state.label, seed=done.seed,
                                   mode=state.mode)
        _write_latent(writer, state)
        suffix = build_config(UpscaleConfig, done.config.get("upscale", {})).suffix
        for image in done.upscaled:
            writer.write_image(image, f"final{suffix}.png",
                               text=png_text(done.config, prompt=state.label, seed=done.seed, mode=state.mode))
        return final

    @staticmethod
    def keep(writer: RunWriter, run: GenerationRun) -> Path | None:
        """The latest image of a stopped run as ``final.png``, with a config that repeats it."""
        image = run.latest_image()
        if image is None:
            return None
        config = config_at_step(run.state.config, run.state.step)
        final = writer.write_final(image, config=config, prompt=run.state.label, seed=run.state.seed,
                                   mode=run.state.mode)
        _write_latent(writer, run.state)
        return final


def _write_latent(writer: RunWriter, state: RunState) -> None:
    """``latent.safetensors``, for "continue"; a run whose latent cannot be read keeps its image."""
    if state.latent is None:
        return
    try:
        latent = state.latent()
    except Exception as error:  # best effort: the image is what matters
        logger.warning("could not save the latent to continue from: %s", error)
        return
    writer.write_latent(latent)


def config_at_step(config: Mapping[str, Any], step: int) -> dict[str, Any]:
    """The text-to-image config that reproduces a run stopped after ``step`` steps: ``steps``
    becomes ``step``, and a story split evenly over the planned steps keeps its phrase length."""
    config = dict(config)
    planned = int(config.get("steps", step))
    if not 0 < step < planned:
        return config
    phrases = len(parse_story(config["prompts"])) if str(config.get("prompts", "")).strip() else 1
    if phrases > 1 and not config.get("change_prompt_every"):
        config["change_prompt_every"] = math.ceil(planned / phrases)
    config["steps"] = step
    return config
