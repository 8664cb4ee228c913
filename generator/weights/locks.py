"""One holder per file across processes and threads: a :class:`filelock.FileLock` on ``<name>.lock``
beside the file, so a second downloader (or converter) waits for the first, then uses its result."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import filelock

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


def lock_path(dest: str | os.PathLike[str]) -> Path:
    """The lock file of ``dest``'s download (``dest`` + ``.lock``)."""
    return Path(dest).with_name(Path(dest).name + LOCK_SUFFIX)


@contextlib.contextmanager
def download_lock(dest: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the exclusive lock of ``dest``'s download: a second holder, in this process or another,
    waits here until the first is done. The holder removes the lock file before letting go, so none
    is left in the weights folder (filelock 3.21+ has a waiter that then holds the removed file try
    the path again). Where no lock file can be made (a read-only folder) nothing is locked."""
    lock: filelock.BaseFileLock | None = filelock.FileLock(lock_path(dest))
    try:
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            logger.info("waiting for another process that is downloading %s", Path(dest).name)
            lock.acquire()
    except OSError as error:  # the download itself then says why it cannot write
        logger.debug("could not lock %s: %s", lock_path(dest), error)
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            with contextlib.suppress(OSError):
                lock_path(dest).unlink()
            lock.release()
