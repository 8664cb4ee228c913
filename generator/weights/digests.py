"""What is known about a weight file's bytes: its sha256, cached in a sidecar ``<name>.sha256``
with the file's size and mtime so checking a 1 GB file again is free; the hashes observed at
first download of files with no published hash (``observed-sha256.json``); and moving a file
that failed its check aside instead of deleting a user's copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".sha256"
OBSERVED_FILE = "observed-sha256.json"


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the verification cache of ``path`` is kept (``path`` + ``.sha256``)."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Lowercase hex sha256 digest of a file, read in chunks."""
    return sha256_state(path).hexdigest()


def sha256_state(path: str | os.PathLike[str]) -> Any:
    """The sha256 object of a file's bytes, to go on with bytes appended to it (a resumed download)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256")


def write_sidecar(path: str | os.PathLike[str], digest: str) -> None:
    """Record ``digest`` for ``path`` with its current size and mtime (best effort)."""
    stat = Path(path).stat()
    try:
        sidecar_path(path).write_text(json.dumps({"sha256": digest, "size": stat.st_size,
                                                  "mtime_ns": stat.st_mtime_ns}) + "\n", encoding="utf-8")
    except OSError as error:  # a read-only weights folder only costs a rehash next time
        logger.debug("could not write %s: %s", sidecar_path(path), error)


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of ``path``, reusing the sidecar while the file's size and mtime are unchanged
    (recomputed and cached again when it is stale or unreadable)."""
    stat = Path(path).stat()
    try:
        record = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        if (record["size"], record["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns) and \
                re.fullmatch(r"[0-9a-f]{64}", record["sha256"]):
            return record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_of(path)
    write_sidecar(path, digest)
    return digest


def remove_file(path: str | os.PathLike[str]) -> None:
    """Delete a file together with its sidecar, ignoring whichever does not exist."""
    Path(path).unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)


def move_aside(path: str | os.PathLike[str]) -> Path:
    """Rename a file that failed its check to ``<name>.rejected`` (or ``.rejected-2``, ...) and
    drop its sidecar, so a user's own copy is never deleted; returns the new path."""
    path = Path(path)
    aside, counter = path.with_name(path.name + ".rejected"), 2
    while aside.exists():
        aside, counter = path.with_name(f"{path.name}.rejected-{counter}"), counter + 1
    os.replace(path, aside)
    sidecar_path(path).unlink(missing_ok=True)
    return aside


def observed_hash(root: str | os.PathLike[str], name: str) -> dict[str, Any] | None:
    """The size and sha256 recorded for registry file ``name`` at its first download, if any."""
    try:
        record = json.loads((Path(root) / OBSERVED_FILE).read_text(encoding="utf-8")).get(name)
        return record if isinstance(record["sha256"], str) and isinstance(record["size"], int) else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def record_observed_hash(root: str | os.PathLike[str], name: str, path: str | os.PathLike[str]) -> str:
    """Record the size and sha256 of a freshly downloaded file without a published hash, so
    later runs check it; returns the digest."""
    digest, records_path = cached_sha256(path), Path(root) / OBSERVED_FILE
    try:
        records = json.loads(records_path.read_text(encoding="utf-8"))
        records = records if isinstance(records, dict) else {}
    except (OSError, ValueError):
        records = {}
    records[name] = {"sha256": digest, "size": Path(path).stat().st_size, "file": Path(path).name}
    tmp = records_path.with_name(records_path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, records_path)
    except OSError as error:  # a read-only weights folder only loses the later check
        logger.warning("could not record the hash of %s in %s: %s", name, records_path, error)
    return digest
