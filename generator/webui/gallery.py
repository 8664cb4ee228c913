"""Past runs, read from the outputs folder for the web UI's gallery (newest first)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.errors import InputError
from generator.io.outputs import MODE_KEY, PROMPT_KEY, read_png_text
from generator.sinks import RUN_RECORD

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PastRun:
    """A finished (or stopped) run folder.

    Attributes:
        folder: the run folder.
        image: its ``final.png``.
        mode: ``text-to-image`` or ``sample``.
        title: the prompt, or the prior's name for samples.
        config: the resolved config (``config.json``).
    """

    folder: Path
    image: Path
    mode: str
    title: str
    config: dict[str, Any]

    @property
    def caption(self) -> str:
        seed = self.config.get("seed")
        return f"{self.title[:60]} · seed {seed}" if seed is not None else self.title[:60]


def _read(folder: Path) -> PastRun | None:
    image = folder / "final.png"
    if not image.is_file():
        return None
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a run whose config is missing cannot be reloaded; skip it
    if not isinstance(config, dict):
        return None
    mode, label = _recorded_mode(folder, image)
    return PastRun(folder, image, mode, label or str(config.get("prompts") or "(image prompts)"), config)


def _recorded_mode(folder: Path, image: Path) -> tuple[str, str | None]:
    """(mode, label) as the run recorded them: ``run.json``, else the final PNG's text chunks
    (runs made before run.json existed)."""
    try:
        record = json.loads((folder / RUN_RECORD).read_text(encoding="utf-8"))
        return str(record["mode"]), str(record.get("label") or "") or None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        text = read_png_text(image)
    except InputError:
        return "text-to-image", None
    return text.get(MODE_KEY, "text-to-image"), text.get(PROMPT_KEY)


def list_runs(outputs_dir: Path, limit: int = 60) -> list[PastRun]:
    """The newest ``limit`` run folders in ``outputs_dir`` that hold a final.png and config.json."""
    if not outputs_dir.is_dir():
        return []
    folders = sorted((p for p in outputs_dir.iterdir() if p.is_dir()),
                     key=lambda p: (p / "final.png").stat().st_mtime if (p / "final.png").exists() else 0,
                     reverse=True)
    runs = []
    for folder in folders:
        run = _read(folder)
        if run is not None:
            runs.append(run)
            if len(runs) == limit:
                break
    return runs
