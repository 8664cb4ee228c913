"""Robust HTTP downloads of weight files, with the standard library only.

A file is streamed into ``<name>.part`` beside its destination. An interrupted download is
resumed with a ``Range`` request on the next attempt, mirrors are tried in order, the
finished file is checked against its byte size and sha256, and only then renamed into
place atomically. A small sidecar ``<name>.sha256`` remembers the verified digest together
with the file's size and modification time, so checking a 1 GB file again is free.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from generator.errors import WeightsError

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, total_bytes_or_None)`` while a file downloads."""

CHUNK_BYTES = 1 << 20
USER_AGENT = f"vqgan-clip-generator/1.0 Python-urllib/{sys.version_info[0]}.{sys.version_info[1]}"
SIDECAR_SUFFIX = ".sha256"
PART_SUFFIX = ".part"

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class _Truncated(Exception):
    """The server closed the connection before sending every byte it announced."""


# URLError, socket and TLS errors are all OSErrors; local write failures are turned into a
# WeightsError before they could be mistaken for one.
_NETWORK_ERRORS = (OSError, http.client.HTTPException, _Truncated)


def part_path(dest: str | os.PathLike[str]) -> Path:
    """Where the partial download of ``dest`` is kept (``dest`` + ``.part``)."""
    dest = Path(dest)
    return dest.with_name(dest.name + PART_SUFFIX)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the verification cache of ``path`` is kept (``path`` + ``.sha256``)."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 digest of a file, read in chunks.

    Args:
        path: The file to hash.

    Returns:
        The lowercase hex digest.
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_sidecar(path: str | os.PathLike[str], digest: str) -> None:
    """Record ``digest`` for ``path`` with its current size and mtime (best effort).

    Args:
        path: The verified file.
        digest: Its hex sha256 digest.
    """
    path = Path(path)
    stat = path.stat()
    record = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        sidecar_path(path).write_text(json.dumps(record) + "\n", encoding="utf-8")
    except OSError as error:  # a read-only weights folder only costs a rehash next time
        logger.debug("could not write %s: %s", sidecar_path(path), error)


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of ``path``, reusing the sidecar when the file's size and mtime are unchanged.

    Args:
        path: An existing file.

    Returns:
        The lowercase hex digest (recomputed and re-cached when the sidecar is stale).
    """
    path = Path(path)
    stat = path.stat()
    try:
        record = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        digest = record["sha256"]
        if (
            record["size"] == stat.st_size
            and record["mtime_ns"] == stat.st_mtime_ns
            and isinstance(digest, str)
            and re.fullmatch(r"[0-9a-f]{64}", digest)
        ):
            return digest
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_of(path)
    write_sidecar(path, digest)
    return digest


def remove_file(path: str | os.PathLike[str]) -> None:
    """Delete a file together with its sidecar, ignoring whichever does not exist."""
    Path(path).unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)


def tqdm_progress(description: str) -> tuple[ProgressCallback, Callable[[], None]]:
    """A progress callback drawing a tqdm bar on stderr, and the function that closes it.

    The bar appears on the first call, so nothing is drawn for a file that is already there.

    Args:
        description: Text shown left of the bar (usually the file name).

    Returns:
        ``(callback, close)``.
    """
    from tqdm import tqdm

    bar: Any = None

    def callback(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=done, desc=description, unit="B",
                       unit_scale=True, file=sys.stderr, dynamic_ncols=True)
            return
        if total != bar.total:
            bar.total = total
        bar.update(done - bar.n)

    def close() -> None:
        if bar is not None:
            bar.close()

    return callback, close


def download_file(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str | None,
    size: int | None,
    progress: ProgressCallback | None = None,
    timeout: float = 60,
) -> Path:
    """Download a file from the first working mirror, resuming, verifying, renaming atomically.

    Args:
        urls: Mirrors, tried in order; a network error moves on to the next one.
        dest: Final path of the file; bytes go to ``dest.part`` until verified.
        sha256: Expected hex digest, or None when no hash is published.
        size: Expected size in bytes, or None when unknown.
        progress: Called with ``(bytes_done, total_or_None)``; a tqdm bar when None.
        timeout: Seconds to wait for the server before a connection counts as failed.

    Returns:
        ``dest``, now complete and verified (its sidecar written).

    Raises:
        WeightsError: Every mirror failed (the partial file is kept for a later resume), the
            disk is full, or the finished file has the wrong size or hash (it is deleted).
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("download_file needs at least one URL")
    dest = Path(dest)
    part = part_path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WeightsError(
            f"cannot create the weights directory {dest.parent} ({error.strerror}); "
            "choose a writable --weights-dir."
        ) from error
    close: Callable[[], None] | None = None
    if progress is None:
        progress, close = tqdm_progress(dest.name)
    try:
        _fetch_any(url_list, dest, part, sha256, size, progress, timeout)
    finally:
        if close is not None:
            close()
    digest = _verify(part, dest, sha256, size)
    os.replace(part, dest)
    write_sidecar(dest, digest)
    return dest


def _verify(part: Path, dest: Path, sha256: str | None, size: int | None) -> str:
    """Check size then hash of a finished partial file; delete it on mismatch."""
    advice = (
        "run the command again; if it keeps failing the mirror may have changed, "
        f"download it by hand and save it as {dest}."
    )
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"the downloaded {dest.name} has {actual_size} bytes instead of the expected "
            f"{size}, so it was deleted; {advice}"
        )
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"the downloaded {dest.name} has sha256 {digest} instead of the expected "
            f"{sha256.lower()}, so it was deleted; {advice}"
        )
    return digest


def _fetch_any(
    urls: list[str],
    dest: Path,
    part: Path,
    sha256: str | None,
    size: int | None,
    progress: ProgressCallback,
    timeout: float,
) -> None:
    """Leave a complete (not yet verified) download in ``part``, trying each mirror once."""
    if size is not None and part.exists():
        have = part.stat().st_size
        if have == size:
            progress(have, size)
            return  # already complete: verification decides
        if have > size:
            part.unlink()  # cannot be a prefix of the right file
    failures: list[str] = []
    for url in urls:
        try:
            _fetch_one(url, part, sha256, size, progress, timeout, restarted=False)
            return
        except _NETWORK_ERRORS as error:
            logger.warning("could not download %s from %s: %s", dest.name, url, _reason(error))
            failures.append(f"{url} ({_reason(error)})")
    kept = " (the partial file is kept and resumes next time)" if part.exists() else ""
    raise WeightsError(
        f"could not download {dest.name} from {' or '.join(failures)}{kept}; check your internet "
        f"connection and run the command again, or download it by hand and save it as {dest}."
    )


def _fetch_one(
    url: str,
    part: Path,
    sha256: str | None,
    size: int | None,
    progress: ProgressCallback,
    timeout: float,
    *,
    restarted: bool,
) -> None:
    """One request to one mirror: resume ``part`` if it exists, else start it."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # follows redirects
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        total = _parse_content_range(error.headers.get("Content-Range"))[2]
        error.close()
        if _partial_is_complete(part, offset, total, sha256):
            progress(offset, offset)
            return
        if restarted:
            raise
        logger.info("the partial %s does not fit the file on the server; starting again", part.name)
        part.unlink(missing_ok=True)
        _fetch_one(url, part, sha256, size, progress, timeout, restarted=True)
        return
    with response:
        length = response.headers.get("Content-Length")
        length_int = int(length) if length and length.isdigit() else None
        if offset and response.status == 206:
            start, _, total = _parse_content_range(response.headers.get("Content-Range"))
            if start is not None and start != offset:
                if restarted:
                    raise _Truncated(f"server resumed at byte {start} instead of {offset}")
                part.unlink(missing_ok=True)
                response.close()
                _fetch_one(url, part, sha256, size, progress, timeout, restarted=True)
                return
            if total is None and length_int is not None:
                total = offset + length_int
            mode, done = "ab", offset
        else:
            if offset:
                logger.info("the server ignored the resume request; restarting %s", part.name)
            mode, done, total = "wb", 0, length_int
        announced = total
        total = total if total is not None else size
        progress(done, total)
        done = _stream(response, part, mode, done, total, progress)
    if total is not None and done < total:
        what = "announced" if announced is not None else "expected"
        raise _Truncated(f"connection closed after {done} of {total} {what} bytes")


def _stream(response: Any, part: Path, mode: str, done: int, total: int | None,
            progress: ProgressCallback) -> int:
    """Copy the response body into ``part``; local write problems become a WeightsError."""
    try:
        out = _open_part(part, mode)
    except OSError as error:
        raise _write_error(error, part) from error
    try:
        while chunk := response.read(CHUNK_BYTES):  # network errors propagate as they are
            try:
                out.write(chunk)
            except OSError as error:
                raise _write_error(error, part) from error
            done += len(chunk)
            progress(done, total)
    finally:
        try:
            out.close()
        except OSError as error:
            raise _write_error(error, part) from error
    return done


def _write_error(error: OSError, part: Path) -> WeightsError:
    """The user-facing error for a failure to write the partial file."""
    name = part.name.removesuffix(PART_SUFFIX)
    if error.errno in _DISK_FULL:
        return WeightsError(
            f"the disk is full while downloading {name} into {part.parent}; the partial file "
            f"{part.name} was kept for resuming, so free some space or choose another "
            "--weights-dir and run the command again."
        )
    return WeightsError(
        f"cannot write {part} ({error.strerror or error}); check the folder's permissions "
        "or choose another --weights-dir."
    )


def _open_part(part: Path, mode: str) -> IO[bytes]:
    """Open the partial file for writing (a seam for tests that simulate a full disk)."""
    return open(part, mode)


def _partial_is_complete(part: Path, offset: int, total: int | None, sha256: str | None) -> bool:
    """After HTTP 416: is the partial file already the whole file?"""
    if sha256 is not None:
        return sha256_of(part) == sha256.lower()
    return total is not None and total == offset


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 199, 1000); missing parts are None."""
    match = _CONTENT_RANGE.match(value.strip()) if value else None
    if not match:
        return None, None, None
    start, end, total = match.groups()
    return (
        int(start) if start else None,
        int(end) if end else None,
        int(total) if total and total != "*" else None,
    )


def _reason(error: BaseException) -> str:
    """A short human description of a network error."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed after {len(error.partial)} bytes of a chunk"
    return str(error) or type(error).__name__
