"""Writing a run's results into its folder, shared by the command line and the web UI.

For each mode: ``write_*`` saves a finished run's images (with the resolved config embedded)
and their upscaled copies; ``keep_*`` saves what a stopped or failed run produced so far.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from generator.config import GenerationConfig, UpscaleConfig
from generator.events import Done
from generator.io.image_data import ImageData
from generator.io.images import contact_sheet
from generator.io.outputs import (
    CONFIG_KEY,
    MODE_KEY,
    SOFTWARE,
    RunWriter,
    free_path,
    png_text,
    write_bytes_atomic,
)
from generator.runs import GenerationRun
from generator.sample_config import SampleConfig


def write_text_to_image(writer: RunWriter, done: Done, config: GenerationConfig) -> Path:
    """``final.png`` + ``config.json`` (+ ``final_x4.png``); returns final.png's path."""
    final = writer.write_final(done.images[0], config=done.config, prompt=config.prompts, seed=done.seed)
    for image in done.upscaled:
        writer.write_image(image, f"final{config.upscale.suffix}.png",
                           text=png_text(done.config, prompt=config.prompts, seed=done.seed, mode="text-to-image"))
    return final


def keep_text_to_image(writer: RunWriter, run: GenerationRun, config: GenerationConfig) -> Path | None:
    """The latest image of a stopped run as ``final.png``, or None if there is none yet."""
    image = run.latest_image()
    if image is None:
        return None
    return writer.write_final(image, config=run.state.config or config.to_dict(), prompt=config.prompts,
                              seed=int(run.state.config.get("seed") or config.seed or 0))


def sample_label(model: str) -> str:
    """The 'prompt' of a sampling run (its folder name and PNG text): ``ffhq_transformer sample``."""
    return f"{Path(model).stem if Path(model).suffix else model} sample"


def write_samples(writer: RunWriter, images: Sequence[Image.Image], resolved: Mapping[str, Any], config: SampleConfig,
                  *, upscaled: Sequence[Image.Image] = (), sheet: Image.Image | None = None) -> Path:
    """``sample-NNN.png`` (+ upscaled copies) and ``final.png`` (a contact sheet, or ``sheet``)."""
    label = sample_label(str(resolved.get("model", config.model)))
    seed = int(resolved.get("seed") or config.seed or 0)
    for suffix, series in (("", images), (config.upscale.suffix, upscaled)):
        for index, image in enumerate(series):
            text = {**png_text(resolved, prompt=label, seed=seed, mode="sample"), "index": str(index)}
            writer.write_image(image, f"sample-{index:03d}{suffix}.png", text=text)
    return writer.write_final(sheet or contact_sheet(list(images)), config=resolved, prompt=label, seed=seed,
                              mode="sample")


def keep_samples(writer: RunWriter, run: GenerationRun, config: SampleConfig) -> Path | None:
    """The finished samples of a stopped run, or the partial sheet of the first batch."""
    partial = run.latest_image()
    if not run.state.images and partial is None:
        return None
    return write_samples(writer, run.state.images, run.state.config or config.to_dict(), config,
                         sheet=partial if not run.state.images else None)


def write_upscaled(folder: Path, source: Path, image: ImageData, result: ImageData, config: UpscaleConfig,
                   model: str, factor: float) -> Path:
    """``<folder>/<source stem>_x4.png`` (never overwriting), with the settings embedded."""
    record = {"upscale": {**vars(config), "upscale": factor}, "source": str(source), "model": model,
              "input_size": list(image.size), "output_size": list(result.size)}
    text = {MODE_KEY: "upscale", CONFIG_KEY: json.dumps(record, sort_keys=True), "Software": SOFTWARE}
    folder.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(free_path(folder, source.stem, f"_x{factor:g}"), result.png_bytes(text))
