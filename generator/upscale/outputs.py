"""The file of an upscale: ``<source stem>_x4.png`` beside the others, never overwriting,
with the settings embedded."""

from __future__ import annotations

import json
from pathlib import Path

from generator.config import UpscaleConfig
from generator.io.atomic_files import write_bytes_atomic
from generator.io.image_data import ImageData
from generator.io.outputs import CONFIG_KEY, MODE_KEY, SOFTWARE, free_path
from generator.upscale.mode import UPSCALE


def write_upscaled(folder: Path, source: Path, image: ImageData, result: ImageData, config: UpscaleConfig,
                   model: str, factor: float) -> Path:
    """``<folder>/<source stem>_x4.png`` (never overwriting), with the settings embedded."""
    record = {"upscale": {**vars(config), "upscale": factor}, "source": str(source), "model": model,
              "input_size": list(image.size), "output_size": list(result.size)}
    text = {MODE_KEY: UPSCALE.name, CONFIG_KEY: json.dumps(record, sort_keys=True), "Software": SOFTWARE}
    folder.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(free_path(folder, source.stem, f"_x{factor:g}"), result.png_bytes(text))
