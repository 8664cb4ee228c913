"""The files of a sampling run: ``sample-NNN.png`` (+ upscaled copies) and ``final.png``, a
contact sheet, with ``config.json``; a stopped run keeps the samples it finished. A completion
keeps the image it completed (``complete.png``) and its mask (``complete-mask.png``) beside
them, so the run repeats from its PNG after the originals are gone."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from generator.config import SampleConfig
from generator.config_schema import build_config
from generator.events import Done
from generator.io.images import contact_sheet
from generator.io.kept_inputs import Field, find_inputs, keep_inputs
from generator.io.masks import ALPHA
from generator.io.outputs import RunWriter, png_text
from generator.runs import GenerationRun, RunState

INPUTS: list[Field] = [(("complete",), "complete.png"), (("mask",), "complete-mask.png")]
"""The inputs a sampling run keeps: the image it completes and its mask."""


class SampleOutputs:
    """``sample-NNN.png`` (+ upscaled copies), ``final.png`` (a contact sheet) + ``config.json``."""

    @staticmethod
    def inputs(settings: dict[str, Any], folder: Path) -> dict[str, Any]:
        """``settings`` recorded in ``folder`` with the inputs kept there found again."""
        return find_inputs(copy.deepcopy(dict(settings)), folder, INPUTS)

    @staticmethod
    def finish(writer: RunWriter, done: Done, state: RunState) -> Path:
        return write_samples(writer, done.images, done.config, state.label, state.mode, upscaled=done.upscaled)

    @staticmethod
    def keep(writer: RunWriter, run: GenerationRun) -> Path | None:
        """The finished samples of a stopped run, or the partial sheet of the first batch."""
        state = run.state
        partial = run.latest_image()
        if not state.images and partial is None:
            return None
        config = dict(state.config)
        if state.images:
            config["n"] = len(state.images)
        return write_samples(writer, state.images, config, state.label, state.mode,
                             sheet=partial if not state.images else None)


def write_samples(writer: RunWriter, images: Sequence[Image.Image], resolved: Mapping[str, Any], label: str,
                  mode: str, *, upscaled: Sequence[Image.Image] = (), sheet: Image.Image | None = None) -> Path:
    """``sample-NNN.png`` (+ upscaled copies) and ``final.png`` (a contact sheet, or ``sheet``)."""
    fields = [field for field in INPUTS if resolved.get(field[0][0]) not in (None, ALPHA)]
    resolved = keep_inputs(writer, copy.deepcopy(dict(resolved)), fields)
    seed = int(resolved["seed"])
    suffix = build_config(SampleConfig, resolved).upscale.suffix
    for ending, series in (("", images), (suffix, upscaled)):
        for index, image in enumerate(series):
            text = {**png_text(resolved, prompt=label, seed=seed, mode=mode), "index": str(index)}
            writer.write_image(image, f"sample-{index:03d}{ending}.png", text=text)
    return writer.write_final(sheet or contact_sheet(list(images)), config=resolved, prompt=label, seed=seed,
                              mode=mode)
