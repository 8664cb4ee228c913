"""One downloader per file across processes and threads: an advisory lock on ``<name>.lock``
beside the file, so a second process waits for the first, then uses the verified file."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: downloads are not locked across processes
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


def lock_path(dest: str | os.PathLike[str]) -> Path:
    """The lock file of ``dest``'s download (``dest`` + ``.lock``)."""
    dest = Path(dest)
    return dest.with_name(dest.name + LOCK_SUFFIX)


@contextlib.contextmanager
def download_lock(dest: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the exclusive lock of ``dest``'s download, across processes (and threads): a
    second downloader of the same file waits here until the first has finished, then finds
    the verified file.

    An advisory ``flock`` on ``<dest>.lock``, released by the system if its holder dies. The
    holder removes the lock file before letting go; a waiter that then holds a lock on the
    removed file opens the path again, so two processes never hold it at once. Where
    ``fcntl`` is missing (Windows) nothing is locked.
    """
    path = lock_path(dest)
    if fcntl is None:
        yield
        return
    while True:
        try:
            handle = open(path, "a+b")  # held open as long as the lock is
        except OSError as error:  # a read-only folder cannot be downloaded into anyway; the download says why
            logger.debug("could not open %s: %s", path, error)
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process that is downloading %s", Path(dest).name)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        handle.close()  # the file this lock was on has been removed by its previous holder
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


