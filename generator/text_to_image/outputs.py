"""The files of a text-to-image run: ``final.png`` (its config embedded), ``config.json``,
``latent.safetensors`` to continue from, and upscaled copies; a stopped run keeps the image it
reached with a config that repeats it.

An edit keeps its inputs beside its result: the image it edited (``edit-image.png``), its mask
(``edit-mask.png``) and its region prompts' masks (``region-1.png``, ...); the recorded config
names them by their file names, and :func:`resolve_inputs` finds them in the run's folder
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
from generator.io.images import open_image
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
        config = keep_inputs(writer, done.config)
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
        config = keep_inputs(writer, config_at_step(run.state.config, run.state.step))
        final = writer.write_final(image, config=config, prompt=run.state.label, seed=run.state.seed,
                                   mode=run.state.mode)
        _write_latent(writer, run.state)
        return final


    @staticmethod
    def inputs(settings: dict[str, Any], folder: Path) -> dict[str, Any]:
        """``settings`` recorded in ``folder`` with the inputs kept there found again."""
        return resolve_inputs(settings, folder)


EDIT_IMAGE, EDIT_MASK, REGION = "edit-image.png", "edit-mask.png", "region-{}.png"


def keep_inputs(writer: RunWriter, config: Mapping[str, Any]) -> dict[str, Any]:
    """Copy an edit's image and mask and the region masks of its prompts into the run folder,
    and return ``config`` naming the copies (by file name). An input that can no longer be read
    keeps its original name in the config, with a warning: the result matters more."""
    config = copy.deepcopy(dict(config))
    edit, init = config.get("edit") or {}, config.get("init") or {}

    def kept(source: str, name: str) -> str:
        try:
            writer.write_image(open_image(source, what="edit input"), name)
        except InputError as error:
            logger.warning("could not keep %s beside the result: %s", source, error)
            return source
        return name

    if edit.get("mask") not in (None, ALPHA):
        edit["mask"] = kept(edit["mask"], EDIT_MASK)
    if (edit.get("mask") is not None or edit.get("outpaint")) and init.get("init_image"):
        init["init_image"] = kept(init["init_image"], EDIT_IMAGE)
    prompts = str(config.get("prompts") or "")
    if "@" in prompts:
        try:
            story = parse_story(prompts)
        except InputError:
            return config
        paths = list(dict.fromkeys(prompt.region for phrase in story for prompt in phrase if prompt.region))
        names = {path: kept(path, REGION.format(number)) for number, path in enumerate(paths, 1)}
        config["prompts"] = " ^ ".join(" | ".join(str(dataclasses.replace(prompt, region=names.get(prompt.region)))
                                                  if prompt.region else str(prompt) for prompt in phrase)
                                       for phrase in story)
    return config


def resolve_inputs(settings: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The settings a run in ``folder`` recorded, with the inputs it kept there (see
    :func:`keep_inputs`) named by their full paths."""
    settings = copy.deepcopy(dict(settings))

    def found(name: Any) -> Any:
        is_kept = isinstance(name, str) and (name in (EDIT_IMAGE, EDIT_MASK) or re.fullmatch(r"region-\d+\.png", name))
        return str(folder / name) if is_kept and (folder / name).is_file() else name

    for section, key in (("edit", "mask"), ("init", "init_image")):
        if isinstance(settings.get(section), dict) and key in settings[section]:
            settings[section][key] = found(settings[section][key])
    prompts = settings.get("prompts")
    if isinstance(prompts, str) and "@ region-" in prompts:
        settings["prompts"] = re.sub(r"@ (region-\d+\.png)", lambda match: "@ " + escape_region(found(match[1])),
                                     prompts)
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
