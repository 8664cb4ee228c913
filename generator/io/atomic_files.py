"""Atomic, never-overwriting file writes, and the one-sentence errors for failed writes.

A file is written to a temporary name beside its destination, fsynced, and published with
``os.link`` (which fails if the destination exists, so nothing is ever overwritten); where
hard links are unsupported, a check plus ``os.replace``. Disk-full and permission failures
become :class:`OutputError` sentences that say the files already written are kept.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from generator.errors import OutputError, summary

logger = logging.getLogger(__name__)

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EINVAL, errno.EMLINK, errno.ENOSYS,
                  errno.ENOTSUP, errno.EOPNOTSUPP}


def output_error(error: OSError, path: Path, folder: Path | None = None) -> OutputError:
    """The one-sentence ``OutputError`` for ``error`` while writing ``path``.

    ``folder`` (default: ``path``'s parent) is named as the place whose files are kept.
    """
    folder = path.parent if folder is None else folder
    kept = f"(the files already written in {folder} are kept)"
    name = path.relative_to(folder) if path.is_relative_to(folder) else path
    if isinstance(error, FileExistsError) or error.errno == errno.EEXIST:
        return OutputError(f"{path} already exists and is never overwritten; choose another "
                           f"--out folder {kept}.")
    if error.errno in _DISK_FULL:
        return OutputError(f"the disk is full while writing {name}; free some space and run "
                           f"again {kept}.")
    if error.errno == errno.EROFS:
        return OutputError(f"cannot write {name} because {folder} is on a read-only file "
                           f"system; choose a writable --out folder {kept}.")
    if error.errno in (errno.EACCES, errno.EPERM):
        return OutputError(f"permission denied while writing {name} in {folder}; choose a "
                           f"folder you can write to with --out {kept}.")
    return OutputError(f"cannot write {name} in {folder} ({error.strerror or summary(error)}); "
                       f"check that folder or choose another --out {kept}.")


@contextlib.contextmanager
def atomic_path(path: Path, *, folder: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; if the block succeeds, publish it.

    The temporary name keeps ``path``'s suffix (encoders pick the format from it). It is
    fsynced and hard-linked to ``path``, which fails if ``path`` exists (where hard links are
    unsupported: a check + ``os.replace``), and always removed. ``folder`` (default: the
    parent) is named in error messages.

    Raises:
        OutputError: If ``path`` exists or an ``OSError`` occurs, also inside the block.
    """
    path = Path(path)
    try:
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        tmp = _reserve_temp(path)
    except OSError as error:
        raise output_error(error, path, folder) from error
    try:
        yield tmp
        _fsync(tmp, os.O_RDWR)
        _publish(tmp, path)
    except OSError as error:
        raise output_error(error, path, folder) from error
    finally:
        _unlink_quietly(tmp)


def write_bytes_atomic(path: Path, data: bytes, *, folder: Path | None = None) -> Path:
    """Write ``data`` to the new file ``path`` atomically; returns ``path``.

    Raises:
        OutputError: If ``path`` exists (it is never overwritten), the disk is full or the
            folder is not writable; ``folder`` (default: the parent) is named in the message.
    """
    with atomic_path(path, folder=folder) as tmp:
        _write_file(tmp, data)
    logger.debug("wrote %s (%d bytes)", path, len(data))
    return Path(path)


def replace_bytes_atomic(path: Path, data: bytes, *, folder: Path | None = None) -> Path:
    """Write ``data`` to ``path`` atomically, replacing the file there if any (for a file that
    is meant to be rewritten, such as a grid redrawn as its cells finish); returns ``path``.

    Readers see the old file or the new one, never a part.

    Raises:
        OutputError: the disk is full or the folder is not writable (``folder``, default the
            parent, is named in the message).
    """
    path = Path(path)
    try:
        tmp = _reserve_temp(path)
    except OSError as error:
        raise output_error(error, path, folder) from error
    try:
        _write_file(tmp, data)
        _fsync(tmp, os.O_RDWR)
        os.replace(tmp, path)
        with contextlib.suppress(OSError):
            _fsync(path.parent, os.O_RDONLY)
    except OSError as error:
        raise output_error(error, path, folder) from error
    finally:
        _unlink_quietly(tmp)
    logger.debug("replaced %s (%d bytes)", path, len(data))
    return path




def _reserve_temp(path: Path) -> Path:
    """Create an empty, uniquely named file beside ``path`` (mode 0666 minus the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue


def _write_file(tmp: Path, data: bytes) -> None:
    """Write ``data`` into the temporary file (a seam for tests that simulate a full disk)."""
    with open(tmp, "wb") as handle:
        handle.write(data)


def _publish(tmp: Path, path: Path) -> None:
    """Give the finished ``tmp`` the name ``path``; FileExistsError if ``path`` exists."""
    try:
        os.link(tmp, path)
    except OSError as error:
        if isinstance(error, FileExistsError) or error.errno not in _NO_HARD_LINKS:
            raise
        logger.debug("no hard links in %s (%s); renaming instead", path.parent, error)
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)
    _unlink_quietly(tmp)
    with contextlib.suppress(OSError):  # make the new name durable too (not on Windows)
        _fsync(path.parent, os.O_RDONLY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as error:
        logger.warning("could not remove the temporary file %s: %s", path, error)
