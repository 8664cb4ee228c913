"""Robust HTTP downloads of weight files, with the standard library only.

A file is streamed into ``<name>.part`` beside its destination. An interrupted download is
resumed with a ``Range`` request on the next attempt, mirrors are tried in order, the
finished file is checked against its byte size and sha256, and only then renamed into
place atomically, its digest cached in a sidecar (:mod:`generator.weights.digests`). A lock
(:mod:`generator.weights.locks`) lets one process download a file while others wait, then
use it.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from generator.errors import WeightsError
from generator.weights import digests
from generator.weights.locks import download_lock

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, total_bytes_or_None)`` while a file downloads."""

CHUNK_BYTES = 1 << 20
USER_AGENT = f"vqgan-clip-generator/1.0 Python-urllib/{sys.version_info[0]}.{sys.version_info[1]}"
PART_SUFFIX = ".part"

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class _Truncated(Exception):
    """The server closed the connection before sending every byte it announced."""


class _NotTheFile(Exception):
    """The server answered with a web page or other text where a binary file was expected."""


# URLError, socket and TLS errors are all OSErrors; local write failures are turned into a
# WeightsError before they could be mistaken for one.
_NETWORK_ERRORS = (OSError, http.client.HTTPException, _Truncated, _NotTheFile)
_TEXT_TYPES = ("text/", "application/json", "application/xhtml", "application/xml")


def part_path(dest: str | os.PathLike[str]) -> Path:
    """Where the partial download of ``dest`` is kept (``dest`` + ``.part``)."""
    dest = Path(dest)
    return dest.with_name(dest.name + PART_SUFFIX)


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
    binary: bool = True,
) -> Path:
    """Download a file from the first working mirror, resuming, verifying, renaming atomically.

    Args:
        urls: Mirrors, tried in order; a network error moves on to the next one.
        dest: Final path of the file; bytes go to ``dest.part`` until verified.
        sha256: Expected hex digest (or a leading part of it), or None when none is published.
        size: Expected size in bytes, or None when unknown.
        progress: Called with ``(bytes_done, total_or_None)``; a tqdm bar when None.
        timeout: Seconds to wait for the server before a connection counts as failed.
        binary: The file is binary, so a mirror answering with a web page or other text
            (an error or sign-in page) has failed, and the next one is tried.

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
    with download_lock(dest):
        if _finished_by_another(dest, sha256, size):
            return dest
        close: Callable[[], None] | None = None
        if progress is None:
            progress, close = tqdm_progress(dest.name)
        try:
            _fetch_any(url_list, dest, part, sha256, size, progress, timeout, binary)
        finally:
            if close is not None:
                close()
        digest = _verify(part, dest, sha256, size)
        os.replace(part, dest)
        digests.write_sidecar(dest, digest)
    return dest


def _finished_by_another(dest: Path, sha256: str | None, size: int | None) -> bool:
    """Whether ``dest`` is already there and verified (another process downloaded it while
    this one waited for the lock)."""
    if not dest.is_file():
        return False
    if size is not None and dest.stat().st_size != size:
        return False
    return sha256 is None or digests.cached_sha256(dest).startswith(sha256.lower())


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
    digest = digests.sha256_of(part)
    if sha256 is not None and not digest.startswith(sha256.lower()):
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
    binary: bool = True,
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
            _fetch_one(url, part, sha256, size, progress, timeout, restarted=False, binary=binary)
            return
        except _NETWORK_ERRORS as error:
            if isinstance(error, _NotTheFile):
                part.unlink(missing_ok=True)
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
    binary: bool = True,
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
        _fetch_one(url, part, sha256, size, progress, timeout, restarted=True, binary=binary)
        return
    with response:
        content_type = (response.headers.get("Content-Type") or "").lower()
        if binary and content_type.startswith(_TEXT_TYPES):
            raise _NotTheFile(f"the server sent {content_type.split(';')[0]} instead of the file")
        length = response.headers.get("Content-Length")
        length_int = int(length) if length and length.isdigit() else None
        if offset and response.status == 206:
            start, _, total = _parse_content_range(response.headers.get("Content-Range"))
            if start is not None and start != offset:
                if restarted:
                    raise _Truncated(f"server resumed at byte {start} instead of {offset}")
                part.unlink(missing_ok=True)
                response.close()
                _fetch_one(url, part, sha256, size, progress, timeout, restarted=True, binary=binary)
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
        done = _stream(response, part, mode, done, total, progress, check_binary=binary and done == 0)
    if total is not None and done < total:
        what = "announced" if announced is not None else "expected"
        raise _Truncated(f"connection closed after {done} of {total} {what} bytes")


def _stream(response: Any, part: Path, mode: str, done: int, total: int | None,
            progress: ProgressCallback, *, check_binary: bool = False) -> int:
    """Copy the response body into ``part``; local write problems become a WeightsError.
    With ``check_binary``, a body that starts like text (a web page) is refused."""
    first = response.read(CHUNK_BYTES)
    if check_binary and looks_like_text(first):
        raise _NotTheFile("the server sent a web page or other text instead of the file")
    try:
        out = _open_part(part, mode)
    except OSError as error:
        raise _write_error(error, part) from error
    try:
        chunk = first
        while chunk:  # network errors propagate as they are
            try:
                out.write(chunk)
            except OSError as error:
                raise _write_error(error, part) from error
            done += len(chunk)
            progress(done, total)
            chunk = response.read(CHUNK_BYTES)
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
        return digests.sha256_of(part) == sha256.lower()
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
        if 300 <= error.code < 400:
            return f"HTTP {error.code}: the server redirects in a loop"
        return " ".join(f"HTTP {error.code} {error.reason}".split())
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed after {len(error.partial)} bytes of a chunk"
    return str(error) or type(error).__name__


def looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a download are text (HTML, JSON, a message), not a binary
    file: no NUL byte and nothing outside printable ASCII and whitespace in the first 512."""
    sample = head[:512]
    if not sample:
        return False
    return b"\x00" not in sample and all(32 <= byte < 127 or byte in b"\t\n\r\f" for byte in sample)


def download_member(urls: Sequence[str], dest: str | os.PathLike[str], member: str, *,
                    progress: ProgressCallback | None = None) -> Path:
    """Download a zip (resuming like :func:`download_file`), keep only ``member`` as ``dest``,
    and delete the zip.

    Raises:
        WeightsError: the download failed, the file is not a zip, lacks ``member``, or claims
            to unpack to far more than its size.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with download_lock(dest):
        if dest.is_file():  # unpacked by another process while this one waited
            return dest
        return _download_member(urls, dest, member, progress)


def _download_member(urls: Sequence[str], dest: Path, member: str, progress: ProgressCallback | None) -> Path:
    archive_path = download_file(urls, dest.with_name(dest.name + ".zip"), sha256=None, size=None,
                                 progress=progress, binary=True)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = [info for info in archive.infolist() if info.filename.rsplit("/", 1)[-1] == member]
            if len(names) != 1:
                raise WeightsError(f"the downloaded {archive_path.name} holds no single {member}; the mirror may have "
                                   f"changed: download it by hand and save its {member} as {dest}.")
            info = names[0]
            if info.file_size > 4 * archive_path.stat().st_size + 64 * 2**20:
                raise WeightsError(f"the downloaded {archive_path.name} claims {member} unpacks to "
                                   f"{info.file_size} bytes, far more than a checkpoint; it was not unpacked.")
            tmp = dest.with_name(dest.name + ".unpacking")
            with archive.open(info) as source, open(tmp, "wb") as target:
                shutil.copyfileobj(source, target, CHUNK_BYTES)
            os.replace(tmp, dest)
    except zipfile.BadZipFile:
        digests.remove_file(archive_path)
        raise WeightsError(f"the downloaded {archive_path.name} is not a zip file, so it was deleted; run the "
                           "command again, or download it by hand.") from None
    except OSError as error:
        raise _write_error(error, dest.with_name(dest.name + PART_SUFFIX)) from error
    digests.remove_file(archive_path)
    digests.write_sidecar(dest, digests.sha256_of(dest))
    return dest
