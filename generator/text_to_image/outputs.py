"""The files of a text-to-image run: ``final.png`` (its config embedded), ``config.json``,
``latent.safetensors`` to continue from, and upscaled copies; a stopped run keeps the image it
reached with a config that repeats it.

An edit keeps its inputs beside its result: the image it edited (``edit-image.png``), its mask
(``edit-mask.png``) and its region prompts' masks (``region-1.png``, ...); the recorded config
names them by their file names, and :func:`find_edit_inputs` finds them in the run's folder
again, so ``--from final.png`` and the gallery repeat the run after the originals are gone.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from generator.config import UpscaleConfig
from generator.config_schema import build_config
from generator.errors import InputError
from generator.events import Done
from generator.io.kept_inputs import Field, find_inputs, keep_file, keep_inputs
from generator.io.masks import ALPHA
from generator.io.outputs import RunWriter, png_text
from generator.runs import GenerationRun, RunState
from generator.text_to_image.prompts import escape_region, parse_story

logger = logging.getLogger(__name__)


class TextToImageOutputs:
    """``final.png`` (config embedded) + ``config.json`` + ``latent.safetensors`` (+ ``final_x4.png``),
    and an edit's inputs."""

    @staticmethod
    def finish(writer: RunWriter, done: Done, state: RunState) -> Path:
        config = keep_edit_inputs(writer, done.config)
        final = writer.write_final(done.images[0], config=config, prompt=state.label, seed=done.seed,
                                   mode=state.mode)
        _write_latent(writer, state)
        suffix = build_config(UpscaleConfig, done.config.get("upscale", {})).suffix
        for image in done.upscaled:
            writer.write_image(image, f"final{suffix}.png",
                               text=png_text(config, prompt=state.label, seed=done.seed, mode=state.mode))
        return final

    @staticmethod
    def keep(writer: RunWriter, run: GenerationRun) -> Path | None:
        """The latest image of a stopped run as ``final.png``, with a config that repeats it."""
        image = run.latest_image()
        if image is None:
            return None
        config = keep_edit_inputs(writer, config_at_step(run.state.config, run.state.step))
        final = writer.write_final(image, config=config, prompt=run.state.label, seed=run.state.seed,
                                   mode=run.state.mode)
        _write_latent(writer, run.state)
        return final


    @staticmethod
    def inputs(settings: dict[str, Any], folder: Path) -> dict[str, Any]:
        """``settings`` recorded in ``folder`` with the inputs kept there found again."""
        return find_edit_inputs(settings, folder)


EDIT_IMAGE, EDIT_MASK, REGION = "edit-image.png", "edit-mask.png", "region-{}.png"
_REGION = re.compile(r"@ (region-\d+\.png)")


def _fields(config: Mapping[str, Any]) -> list[Field]:
    """The inputs an edit keeps: its mask (unless it is the image's transparency) and its image."""
    edit = config.get("edit") or {}
    fields: list[Field] = []
    if edit.get("mask") not in (None, ALPHA):
        fields.append((("edit", "mask"), EDIT_MASK))
    if edit.get("mask") is not None or edit.get("outpaint"):
        fields.append((("init", "init_image"), EDIT_IMAGE))
    return fields


def keep_edit_inputs(writer: RunWriter, config: Mapping[str, Any]) -> dict[str, Any]:
    """Copy an edit's image and mask and the region masks of its prompts into the run folder,
    and return ``config`` naming the copies by their file names."""
    config = keep_inputs(writer, copy.deepcopy(dict(config)), _fields(config))
    prompts = str(config.get("prompts") or "")
    if "@" in prompts:
        try:
            story = parse_story(prompts)
        except InputError:
            return config
        paths = list(dict.fromkeys(prompt.region for phrase in story for prompt in phrase if prompt.region))
        names = {path: keep_file(writer, path, REGION.format(number)) for number, path in enumerate(paths, 1)}
        config["prompts"] = " ^ ".join(" | ".join(str(dataclasses.replace(prompt, region=names.get(prompt.region)))
                                                  if prompt.region else str(prompt) for prompt in phrase)
                                       for phrase in story)
    return config


def find_edit_inputs(settings: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The settings a run in ``folder`` recorded, with the inputs it kept there (see
    :func:`keep_edit_inputs`) named by their full paths."""
    settings = find_inputs(copy.deepcopy(dict(settings)), folder, [(("edit", "mask"), EDIT_MASK),
                                                                    (("init", "init_image"), EDIT_IMAGE)])
    prompts = settings.get("prompts")
    if isinstance(prompts, str) and "@ region-" in prompts:
        def found(match: re.Match[str]) -> str:
            kept = folder / match[1]
            return "@ " + (escape_region(str(kept)) if kept.is_file() else match[1])

        settings["prompts"] = _REGION.sub(found, prompts)
    return settings


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
