"""Jobs files: a text file of prompts, JSONL, or CSV, each line a text-to-image job.

* ``.txt`` (or any other suffix): one prompt a line; blank lines and ``#`` comments are skipped.
* ``.jsonl``: one JSON object a line: ``prompt`` (or ``prompts``) plus any config keys, by
  leaf name (``"cutn": 8``) or nested (``"cutouts": {"cutn": 8}``).
* ``.csv``: a header naming config keys (``prompt``, ``seed``, ``steps``, ``size`` ...), one
  job a row; an empty cell leaves the key to the defaults.

Every job starts from the same defaults (the command's flags and ``--preset``), and its own
keys override them. ``seeds`` > 1 makes that many images of each job: seed, seed + 1, ...
when a seed is given, else random seeds (recorded). A job's id (``<line>.<k>``) and its
fingerprint (the settings it was asked for) let a rerun find the jobs already done.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.config import GenerationConfig, new_seed
from generator.config_schema import field_paths, leaf_hints, merge, nest
from generator.errors import ConfigError, InputError

_TOP_LEVEL = {name for name in typing.get_type_hints(GenerationConfig) if not name.startswith("_")}
_ALIASES = {"prompt": "prompts"}


@dataclass(frozen=True)
class Job:
    """One image to make.

    Attributes:
        id: ``<line>.<k>``: the line of the jobs file and the index among its seeds.
        config: the resolved config (its seed set).
        fingerprint: a digest of what was asked (the seed only when it was given), so a
            rerun recognises the job even when its seed was drawn at random.
        source: ``prompts.txt line 3``, for messages.
    """

    id: str
    config: GenerationConfig
    fingerprint: str
    source: str

    def with_seed(self, seed: int) -> Job:
        """The same job with another seed (a rerun keeps a random seed drawn before)."""
        return Job(self.id, self.config.replace(seed=seed), self.fingerprint, self.source)


def read_jobs(path: Path, defaults: Mapping[str, Any] | None = None, *, seeds: int = 1,
              seed_of: Callable[[Job], int | None] | None = None) -> list[Job]:
    """The jobs of a jobs file.

    Args:
        path: a ``.txt``, ``.jsonl`` or ``.csv`` file.
        defaults: the plain (nested) settings every job starts from.
        seeds: images per line.
        seed_of: the seed a job without one had in an earlier run (None: draw a new one).

    Raises:
        InputError: the file cannot be read or holds no job.
        ConfigError: a line has an unknown key or a bad value (the sentence names the line).
    """
    path = Path(path)
    if seeds < 1:
        raise ConfigError(f"--seeds must be 1 or more, not {seeds}.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"the jobs file {path} does not exist; give a .txt, .jsonl or .csv file of jobs.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"the jobs file {path} cannot be read ({error}); give a UTF-8 text file.") from None
    suffix = path.suffix.lower()
    rows = _jsonl_rows(text, path) if suffix == ".jsonl" else _csv_rows(text, path) if suffix == ".csv" \
        else _text_rows(text)
    jobs: list[Job] = []
    for line, keys in rows:
        jobs.extend(_jobs_of_line(path, line, keys, defaults or {}, seeds, seed_of))
    if not jobs:
        raise InputError(f"the jobs file {path} holds no job; write one prompt a line (or JSONL / CSV rows).")
    return jobs


def parse_jobs(lines: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any] | None = None, *,
               seeds: int = 1, name: str = "jobs") -> list[Job]:
    """Jobs from in-memory rows of config keys (the web UI's batch), numbered from line 1."""
    jobs: list[Job] = []
    for line, keys in enumerate(lines, start=1):
        jobs.extend(_jobs_of_line(Path(name), line, keys, defaults or {}, seeds, None))
    return jobs


def _text_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            rows.append((number, {"prompts": prompt}))
    return rows


def _jsonl_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            keys = json.loads(line)
        except ValueError as error:
            raise ConfigError(f"{path.name} line {number} is not valid JSON ({error.args[0]}); write one JSON "
                              'object a line, e.g. {"prompt": "a cat", "seed": 3}.') from None
        if not isinstance(keys, dict):
            raise ConfigError(f"{path.name} line {number} must be a JSON object of config keys, "
                              f"not {type(keys).__name__}.")
        rows.append((number, keys))
    return rows


def _csv_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    hints = leaf_hints(GenerationConfig)
    rows = []
    for cells in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [_ALIASES.get(cell.strip(), cell.strip()) for cell in cells]
            for key in header:
                if key not in hints:
                    raise ConfigError(_unknown(path, number, key))
            continue
        if len(cells) > len(header):
            raise ConfigError(f"{path.name} line {number} has {len(cells)} cells but the header names "
                              f"{len(header)} keys; quote cells that hold commas.")
        keys = {}
        for key, cell in zip(header, cells, strict=False):  # a short row leaves its last keys unset
            if cell.strip():
                keys[key] = cell_value(hints[key], cell.strip(), path, number, key)
        rows.append((number, keys))
    return rows


def cell_value(hint: Any, cell: str, path: Path, number: int, key: str) -> Any:
    """A CSV cell as the plain value of its key (numbers, true/false, ``512x512``, lists)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
    bad = ConfigError(f"{path.name} line {number}: {key} {cell!r} is not a valid value; see "
                      "`python -m generator --help` for what it takes.")
    if cell.startswith(("[", "{")):
        try:
            return json.loads(cell)
        except ValueError:
            raise bad from None
    try:
        if hint is bool:
            lowered = cell.lower()
            if lowered not in ("true", "false", "yes", "no", "1", "0"):
                raise bad
            return lowered in ("true", "yes", "1")
        if hint is int:
            return int(cell)
        if hint is float:
            return float(cell)
        if origin is tuple:
            parts = [part for part in re.split(r"[\sx,]+" if typing.get_args(hint)[0] is int else r"[\s,]+", cell)
                     if part]
            return [int(part) for part in parts] if typing.get_args(hint)[0] is int else parts
    except ValueError:
        raise bad from None
    return cell


def _unknown(path: Path, number: int, key: str) -> str:
    return (f"{path.name} line {number}: unknown config key {key!r}; use prompt or a key of "
            "`python -m generator presets default` (such as seed, steps, size, cutn).")


def _jobs_of_line(path: Path, line: int, keys: Mapping[str, Any], defaults: Mapping[str, Any], seeds: int,
                  seed_of: Callable[[Job], int | None] | None) -> list[Job]:
    where = f"{path.name} line {line}"
    flat: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    paths = field_paths(GenerationConfig)
    for raw, value in keys.items():
        key = _ALIASES.get(raw, raw)
        if key in paths and "." in paths[key]:
            flat[key] = value
        elif key in _TOP_LEVEL:
            nested[key] = value
        else:
            raise ConfigError(_unknown(path, line, str(raw)))
    if "init_image" in flat and "init" not in flat:
        flat["init"] = "image"
    if "prior" in flat and "init" not in flat:
        flat["init"] = "prior"
    asked = merge(merge(defaults, nested), nest(GenerationConfig, flat))
    try:
        config = GenerationConfig.from_dict(asked)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    if not (config.prompts or config.image_prompts or config.noise_prompts).strip():
        raise ConfigError(f"{where} has no prompt; give a prompt (or image or noise prompts) on every line.")
    jobs = []
    for k in range(seeds):
        plain = config.to_dict()
        fingerprint = hashlib.sha256(json.dumps([plain, k], sort_keys=True).encode()).hexdigest()[:16]
        job = Job(f"{line}.{k}", config, fingerprint, where)
        if config.seed is not None:
            seed = config.seed + k
        else:
            seed = (seed_of(job) if seed_of else None)
            seed = new_seed() if seed is None else seed
        jobs.append(job.with_seed(seed))
    return jobs
