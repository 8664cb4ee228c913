"""PNG info: the settings an output PNG carries in its text chunks, for the web UI's PNG info
panel (drop a PNG, see its settings, load them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator import modes
from generator.errors import ConfigError, InputError
from generator.io.outputs import CONFIG_KEY, MODE_KEY, PROMPT_KEY, SEED_KEY, read_png_text

_HINT = "drop a PNG written by this tool, such as a run's final.png"


@dataclass(frozen=True)
class PngSettings:
    """The settings embedded in an output PNG.

    Attributes:
        mode: the command that made it (``text-to-image``, ``sample``, ``upscale``, ...).
        config: the resolved config, as saved (a JSON object).
        summary: one line for people: mode, prompt (or prior), seed, size, steps, models.
    """

    mode: str
    config: dict[str, Any]
    summary: str

    def run_config(self) -> Any:
        """The settings as the config of their mode (one whose settings load into its tab).

        Raises:
            InputError: the mode has no tab to load into, or the settings are not a valid
                config of that mode (e.g. written by an incompatible version).
        """
        mode = modes.recorded(self.mode)
        if mode is None or not mode.loadable or mode.config is None:
            loadable = " or ".join(m.title.lower() for m in modes.MODES.values() if m.loadable)
            raise InputError(f"settings of a {self.mode} output cannot be loaded into a tab; drop the final.png of a "
                             f"{loadable} run.")
        try:
            return mode.config.from_dict(self.config)
        except (ConfigError, InputError) as error:
            raise InputError(f"the settings in this PNG are not a usable {self.mode} config ({error}).") from None


def read_settings(path: str | os.PathLike[str]) -> PngSettings:
    """The settings embedded in an output PNG (its ``generator-config`` and ``generator-mode``
    text chunks).

    Raises:
        InputError: one sentence, naming the file by its name only: the file is missing,
            unreadable or not a PNG, holds no settings of this tool, or its settings are damaged.
    """
    name = Path(path).name or "the file"
    try:
        text = read_png_text(Path(path))
    except InputError:
        raise InputError(f"{name} cannot be read as a PNG image; {_HINT}.") from None
    if CONFIG_KEY not in text:
        raise InputError(f"{name} holds no settings of this tool (made elsewhere, or its text was stripped); "
                         f"{_HINT}.")
    try:
        config = json.loads(text[CONFIG_KEY])
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise InputError(f"the settings embedded in {name} are damaged (not a JSON object); {_HINT}.")
    mode = text.get(MODE_KEY, modes.DEFAULT.name)
    known = modes.recorded(mode)
    config = known.recorded_settings(config, Path(path).parent) if known is not None else config
    return PngSettings(mode, config, _summary(mode, config, text))


def _summary(mode: str, config: dict[str, Any], text: dict[str, str]) -> str:
    """``text-to-image · "city at night" · seed 3 · 32x32 · 10 steps · vqgan_imagenet_f16_16384``."""
    parts = [mode]
    title = text.get(PROMPT_KEY) or config.get("prompts") or config.get("model")
    if title:
        parts.append(f'"{str(title)[:80]}"')
    seed = config.get("seed", text.get(SEED_KEY))
    if seed is not None:
        parts.append(f"seed {seed}")
    size = config.get("size")
    if isinstance(size, list | tuple) and len(size) == 2:
        parts.append(f"{size[0]}x{size[1]}")
    if config.get("steps") is not None:
        parts.append(f"{config['steps']} steps")
    models = config.get("models")
    if isinstance(models, dict) and models.get("vqgan"):
        parts.append(Path(str(models["vqgan"])).name)
    return " · ".join(parts)
