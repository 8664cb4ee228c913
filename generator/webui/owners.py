"""Who owns which run folder: the web UI's owners index, kept outside every served folder.

The index maps run folder names to the visitor id of the browser (or API client) that made
them (:func:`generator.webui.visitors.visitor_id`: a digest of the visitor's secret, so the
index never holds a usable secret). It lives in the server's state folder, by default the
hidden sibling ``.<outputs name>.webui`` of the outputs folder (``--state-dir``), never in the
outputs folder, which holds nothing but runs. Written atomically under a lock (threads, and
processes where ``fcntl`` exists), so two servers on one outputs folder agree.

Round 1 kept the index at ``<outputs>/.webui-owners.json``, where anyone could read it; its
ids were therefore public, so a server that finds one moves it into the state folder as
``leaked-owners.json`` and honours none of its ids (those runs show in the shared gallery only).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from generator.errors import OutputError, summary
from generator.io.atomic_files import output_error

try:
    import fcntl
except ImportError:  # Windows: the in-process lock only
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

INDEX_FILE = "owners.json"
LEGACY_FILE = ".webui-owners.json"  # round 1's index inside the outputs folder
_LOCK_FILE = "owners.lock"
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def default_state_dir(outputs_dir: str | os.PathLike[str]) -> Path:
    """The state folder of a server writing to ``outputs_dir``: its hidden sibling ``.<name>.webui``."""
    outputs = Path(outputs_dir).absolute()
    return outputs.parent / f".{outputs.name}.webui"


class OwnersIndex:
    """The owners index of one outputs folder, stored in ``state_dir``.

    Args:
        outputs_dir: the outputs folder whose run folders are indexed.
        state_dir: where the index lives (default :func:`default_state_dir`); never served.
    """

    def __init__(self, outputs_dir: str | os.PathLike[str], state_dir: str | os.PathLike[str] | None = None):
        self.outputs_dir = Path(outputs_dir)
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir(outputs_dir)
        self.path = self.state_dir / INDEX_FILE

    def read(self) -> dict[str, str]:
        """``{run folder name: visitor id}`` (``{}`` when there is none; a damaged index is
        logged and read as empty, so the gallery shows only the shared runs)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            logger.warning("cannot read the gallery's owners index %s (%s); runs show as unowned", self.path,
                           summary(error))
            return {}
        if not isinstance(data, dict):
            logger.warning("the gallery's owners index %s is not a JSON object; runs show as unowned", self.path)
            return {}
        return {str(name): str(who) for name, who in data.items() if isinstance(who, str)}

    def owner(self, name: str) -> str | None:
        """The visitor id that owns the run folder ``name``, if any."""
        return self.read().get(name)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the index's lock (threads, and processes where fcntl exists)."""
        self.prepare()
        key = self.state_dir.resolve()
        with _locks_guard:
            lock = _locks.setdefault(key, threading.Lock())
        with lock:
            if fcntl is None:
                yield
                return
            try:
                handle = open(self.state_dir / _LOCK_FILE, "a+b")  # noqa: SIM115 (held for the block)
            except OSError as error:
                raise output_error(error, self.state_dir / _LOCK_FILE, self.state_dir) from error
            with handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def write(self, owners: dict[str, str]) -> None:
        """Replace the index atomically (a temporary file, fsynced, renamed over it); hold :meth:`locked`."""
        tmp = self.state_dir / f".owners.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(owners, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise output_error(error, self.path, self.state_dir) from error

    def record(self, name: str, owner: str) -> bool:
        """Record that ``owner`` made the run folder ``name``; False when it belongs to another
        (a folder is never handed over).

        Raises:
            OutputError: the index cannot be written.
        """
        with self.locked():
            owners = self.read()
            if owners.get(name) not in (None, owner):
                logger.warning("run folder %s already belongs to another visitor; not recorded again", name)
                return False
            if owners.get(name) != owner:
                owners[name] = owner
                self.write(owners)
        return True

    def forget(self, name: str) -> None:
        """Drop the run folder ``name`` from the index; hold :meth:`locked`."""
        owners = self.read()
        if owners.pop(name, None) is not None:
            self.write(owners)

    def prepare(self) -> None:
        """Create the state folder (private to this user), and retire round 1's public index.

        Raises:
            OutputError: the state folder cannot be created.
        """
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create the web UI's state folder {self.state_dir} "
                              f"({error.strerror or summary(error)}); give a writable --state-dir.") from error
        legacy = self.outputs_dir / LEGACY_FILE
        if legacy.is_file():
            with contextlib.suppress(OSError):
                os.replace(legacy, self.state_dir / "leaked-owners.json")
                logger.warning("moved %s out of the outputs folder: its owner ids were readable by every visitor, "
                               "so they are not honoured; those runs show in the shared gallery only", legacy.name)
            with contextlib.suppress(OSError):
                (self.outputs_dir / ".webui-owners.lock").unlink()
