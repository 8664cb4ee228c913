"""The registry of modes: the one place that lists them (one line each).

Front ends, presets, the gallery, PNG info and ``--from`` find every mode here; no other
module names one. A new mode is one folder (its config, pipeline, outputs, ``cli.py``,
``tab.py`` and ``mode.py``) and one line below.
"""

from __future__ import annotations

import difflib

from generator.animate.mode import ANIMATE
from generator.edit.mode import EDIT
from generator.errors import ConfigError
from generator.mode import Mode
from generator.reconstruct.mode import RECONSTRUCT
from generator.sample.mode import SAMPLE
from generator.text_to_image.mode import TEXT_TO_IMAGE
from generator.train.mode import TRAIN
from generator.upscale.mode import UPSCALE

MODES: dict[str, Mode] = {mode.name: mode for mode in (
    TEXT_TO_IMAGE,
    EDIT,
    ANIMATE,
    SAMPLE,
    UPSCALE,
    RECONSTRUCT,
    TRAIN,
)}
"""Every mode by name, in the order the command line lists them and the web UI shows them."""

DEFAULT: Mode = next(mode for mode in MODES.values() if mode.default)
"""The mode ``python -m generator "PROMPT"`` runs, and of runs that recorded no mode (older ones)."""


def get(name: str) -> Mode:
    """The mode called ``name``.

    Raises:
        ConfigError: no such mode (the message lists them).
    """
    if name in MODES:
        return MODES[name]
    close = difflib.get_close_matches(str(name), list(MODES), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"there is no mode called {name!r}; {hint}the modes are {', '.join(MODES)}.")


def recorded(name: str | None) -> Mode | None:
    """The mode an output recorded (None recorded: the default mode, as older runs were); None
    for a mode this version does not know."""
    return DEFAULT if name is None else MODES.get(name)


def for_command(command: str) -> Mode | None:
    """The mode a command-line command (or alias) runs, if any."""
    return next((mode for mode in MODES.values() if command in mode.commands), None)


def with_presets() -> dict[str, Mode]:
    """The modes presets may be written for, by name."""
    return {name: mode for name, mode in MODES.items() if mode.presets}
