"""The store of safe copies: ``<weights dir>/safe-copies/<sha256>.safetensors``, one per
pickled checkpoint ever loaded, keyed by the sha256 of the source file's bytes.

Beside the copies the store remembers, per source path, the digest seen for that file's
size, modification and change times and inode (``sources/``), so a later load finds its copy
without reading the source again; and the refusal of bytes that were refused for what they
hold (``<sha256>.refused.json``), so a hostile file is not parsed twice. Records name the copy
format they belong to (:data:`generator.weights.safe_copy.FORMAT`): a newer reader converts
again. ``$GENERATOR_SAFE_COPIES_DIR`` moves the store (a shared read-only weights folder);
when no store can be written, copies go to a private temporary folder for this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from generator.weights import store
from generator.weights.safe_copy import FORMAT

logger = logging.getLogger(__name__)

COPIES_ENV = "GENERATOR_SAFE_COPIES_DIR"
FOLDER = "safe-copies"
_fallback: Path | None = None


def copies_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where safe copies go: ``$GENERATOR_SAFE_COPIES_DIR``, else ``<weights dir>/safe-copies``;
    the user's cache, then a private temporary folder, when that cannot be written."""
    global _fallback
    env = os.environ.get(COPIES_ENV, "").strip()
    candidates = [Path(env).expanduser()] if env else [store.weights_dir(weights_dir) / FOLDER]
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    candidates.append(Path(cache).expanduser() / "vqgan-studio" / FOLDER)
    for folder in candidates:
        with contextlib.suppress(OSError):
            (folder / "sources").mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK | os.X_OK):
                return folder.absolute()
    if _fallback is None:
        _fallback = Path(tempfile.mkdtemp(prefix="vqgan-studio-safe-copies-"))
        (_fallback / "sources").mkdir()
        logger.warning("no folder for safe copies of checkpoints can be written (tried %s); this process keeps "
                       "them in %s, so each run converts its checkpoints again", candidates[0], _fallback)
    return _fallback


def copy_path(copies: Path, digest: str) -> Path:
    """The safe copy of the bytes whose sha256 is ``digest``."""
    return copies / f"{digest}.safetensors"


def _source_record(copies: Path, source: Path) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.realpath(source))).hexdigest()[:40]
    return copies / "sources" / f"{key}.json"


def _stat_key(source: Path) -> dict[str, int]:
    stat = source.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns, "ino": stat.st_ino,
            "dev": stat.st_dev}


def known_digest(copies: Path, source: Path) -> str | None:
    """The digest recorded for ``source`` as it is now (same size, times and inode), if any."""
    try:
        record = json.loads(_source_record(copies, source).read_text(encoding="utf-8"))
        if record.get("stat") == _stat_key(source) and isinstance(record.get("sha256"), str):
            return record["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    return None


def remember(copies: Path, source: Path, digest: str, stat: dict[str, int]) -> None:
    """Record that ``source``, as ``stat`` describes it, holds the bytes ``digest`` (best effort)."""
    if _stat_key(source) != stat:
        return  # it changed while the child read it; the next load reads it again
    _write_json(_source_record(copies, source), {"path": os.path.realpath(source), "stat": stat, "sha256": digest})


def stat_of(source: Path) -> dict[str, int]:
    """What :func:`remember` compares: the file's size, times and inode."""
    return _stat_key(source)


@dataclass(frozen=True)
class Refusal:
    """Why bytes were refused before.

    Attributes:
        error: the error class name (``CheckpointError`` or ``UnsafeCheckpointError``).
        name: the file name the sentence uses.
        message: the sentence.
        limits: (memory bytes, CPU seconds) of a child stopped by a limit; None when the bytes
            themselves were refused.
    """

    error: str
    name: str
    message: str
    limits: tuple[int, int] | None = None

    def holds_under(self, memory: int, cpu: int) -> bool:
        """Whether the refusal still holds for a child with ``memory`` bytes and ``cpu`` seconds."""
        return self.limits is None or (memory <= self.limits[0] and cpu <= self.limits[1])


def refusal(copies: Path, digest: str) -> Refusal | None:
    """How the bytes ``digest`` were refused before by this reader, if they were."""
    try:
        record = json.loads((copies / f"{digest}.refused.json").read_text(encoding="utf-8"))
        if record.get("format") == FORMAT:
            limits = record.get("limits")
            return Refusal(str(record["error"]), str(record["name"]), str(record["message"]),
                           (int(limits[0]), int(limits[1])) if limits else None)
    except (OSError, ValueError, KeyError, AttributeError, TypeError, IndexError):
        pass
    return None


def record_refusal(copies: Path, digest: str, refused: Refusal) -> None:
    """Remember that the bytes ``digest`` were refused."""
    _write_json(copies / f"{digest}.refused.json", {"format": FORMAT, "error": refused.error, "name": refused.name,
                                                     "message": refused.message, "limits": refused.limits})


def _write_json(path: Path, data: dict) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        partial.write_text(json.dumps(data) + "\n", encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:  # a store that cannot be written only costs a conversion next time
        logger.debug("could not write %s: %s", path, error)
        with contextlib.suppress(OSError):
            partial.unlink()
