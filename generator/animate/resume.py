"""``--resume RUN_FOLDER``: continue an animation that was stopped (Ctrl-C, an error).

A stopped animation's folder holds ``run.json`` (mode ``animate``), ``config.json`` (every
setting, the seed included), ``frames/000000.png ...`` and ``frames.jsonl``. Resuming reads
them, checks that frames 0..n-1 are all there, and continues at frame n with the recorded
settings into a new run folder (which gets copies of the n frames, so it holds the whole
animation, and names its parent in ``run.json``). Since a frame depends only on the previous
frame's PNG, the settings and its own seed, the frames equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from generator.animate.config import AnimationConfig
from generator.animate.mode import ANIMATE
from generator.animate.state import FRAME_RECORDS, Resume
from generator.errors import ConfigError, InputError
from generator.io.images import open_image

RUN_RECORD = "run.json"
CONFIG = "config.json"


def _read_json(path: Path, folder: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder} has no {path.name}, so it is not the folder of a stopped animation; give the "
                         "run folder that `python -m generator animate` printed when it stopped.") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path} cannot be read ({error}); give the folder of a stopped animation.") from None


def read_resume(folder: str | Path) -> tuple[AnimationConfig, Resume]:
    """The recorded settings and finished frames of a stopped animation.

    Raises:
        InputError: not a folder, made by another mode, a frame missing, or unreadable files.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; give the run folder of a stopped animation to --resume.")
    record = _read_json(folder / RUN_RECORD, folder)
    mode = record.get("mode") if isinstance(record, dict) else None
    if mode != ANIMATE.name:
        raise InputError(f"{folder} was made by {mode or 'an unknown command'}, not by animate; --resume continues "
                         "only animations.")
    try:
        config = AnimationConfig.from_dict(_read_json(folder / CONFIG, folder))
    except ConfigError as error:
        raise InputError(f"{folder / CONFIG} does not hold animation settings ({error})") from None
    numbered = {int(p.stem): p for p in (folder / "frames").glob("*.png") if re.fullmatch(r"\d+", p.stem)}
    count = max(numbered) + 1 if numbered else 0
    missing = [index for index in range(count) if index not in numbered]
    if missing:
        raise InputError(f"{folder} is missing frame {missing[0]} (frames/{missing[0]:06d}.png) of the {count} "
                         "frames it should hold; resume from a folder whose frames are all there.")
    frames = [open_image(numbered[index], what="frame").convert("RGB") for index in range(count)]
    return config, Resume(frames, _records(folder, count), folder)


def _records(folder: Path, count: int) -> list[dict[str, Any]]:
    """The parent's per-frame records (a bare ``{"frame": k}`` where it has none)."""
    records: dict[int, dict[str, Any]] = {}
    path = folder / FRAME_RECORDS
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                records[int(entry["frame"])] = entry
            except (ValueError, KeyError, TypeError):
                continue
    return [records.get(index, {"frame": index}) for index in range(count)]

