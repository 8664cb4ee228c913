"""Named partial configs: ``presets/<name>.json``, each ``{"description": ..., "config": {...}}``.

A preset sets only the fields it cares about; the rest keep their defaults. Precedence is
defaults < preset < CLI flags / UI widgets. A preset may also be given as a path to a JSON
file of the same form. ``"kind": NAME`` marks a preset of another mode than the default one
(any mode of :mod:`generator.modes` that takes presets, e.g. the ``sample`` command's).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator import modes
from generator.errors import ConfigError


def _kinds() -> dict[str, type]:
    """The config class of each mode presets may be written for, by mode name."""
    return {name: mode.config for name, mode in modes.with_presets().items()}


def _presets_dir() -> Path:
    """``presets/`` of the checkout, or the copy installed inside the package."""
    checkout = Path(__file__).resolve().parents[1] / "presets"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "presets_data"


PRESETS_DIR = _presets_dir()
DEFAULT_PRESET = "default"


@dataclass(frozen=True)
class Preset:
    """A named partial config."""

    name: str
    description: str
    settings: Mapping[str, Any]
    kind: str = modes.DEFAULT.name

    def config(self) -> Any:
        """Defaults with this preset's settings applied (a GenerationConfig or SampleConfig)."""
        return _kinds()[self.kind].from_dict(self.settings)


def list_presets(directory: Path = PRESETS_DIR, kind: str | None = None) -> list[str]:
    """Names of the presets in ``directory`` (file stems), ``default`` first; only ``kind`` if given."""
    names = sorted(p.stem for p in directory.glob("*.json"))
    if kind is not None:
        names = [n for n in names if _kind_of(directory / f"{n}.json") == kind]
    return sorted(names, key=lambda n: n != DEFAULT_PRESET)


def _kind_of(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("kind", modes.DEFAULT.name))
    except (OSError, ValueError, AttributeError):
        return None


def load_preset(name_or_path: str, directory: Path = PRESETS_DIR, kind: str | None = None) -> Preset:
    """Read and validate a preset by name, or from a JSON file path.

    Raises:
        ConfigError: unknown preset (with the closest names), unreadable JSON, unknown keys
            or out-of-range values.
    """
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = directory / f"{name_or_path}.json"
    if not path.is_file():
        known = list_presets(directory)
        close = difflib.get_close_matches(str(name_or_path), known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(
            f"there is no preset called {name_or_path!r}; {hint}choose one of {', '.join(known)} "
            "(`python -m generator presets` shows them)."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"preset file {path} is not valid JSON ({error}); fix or remove it.") from None
    if not isinstance(data, Mapping) or set(data) - {"description", "config", "kind"}:
        raise ConfigError(f"preset file {path} must hold only \"description\", \"kind\" and \"config\".")
    preset_kind = str(data.get("kind", modes.DEFAULT.name))
    kinds = _kinds()
    if preset_kind not in kinds:
        raise ConfigError(f"preset {path.stem} has kind {preset_kind!r}; use one of {', '.join(kinds)}.")
    if kind is not None and preset_kind != kind:
        raise ConfigError(
            f"preset {path.stem} is for {preset_kind}, not {kind}; "
            f"choose one of {', '.join(list_presets(directory, kind))}."
        )
    settings = data.get("config", {})
    try:
        kinds[preset_kind].from_dict(settings)
    except ConfigError as error:
        raise ConfigError(f"preset {path.stem}: {error}") from None
    return Preset(name=path.stem, description=str(data.get("description", "")), settings=settings, kind=preset_kind)
