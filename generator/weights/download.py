"""Weight-file downloads: :func:`pooch.retrieve` from each mirror in turn checks the sha256 and moves
the file into place atomically; its downloader, :class:`_Resuming`, does what pooch cannot: stream
into a stable ``<name>.part`` that the next attempt resumes with an HTTP ``Range`` request (pooch
starts again from zero), refuse a web page where a binary file was expected, check the size, and
make a full disk one sentence. A :func:`~generator.weights.locks.download_lock` serialises processes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import logging
import os
import re
import shutil
import sys
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import pooch
import requests

from generator.errors import WeightsError
from generator.weights import digests
from generator.weights.locks import download_lock

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, total_bytes_or_None)`` while a file downloads."""

CHUNK_BYTES = 1 << 20
PART_SUFFIX = ".part"
MAX_REDIRECTS = 10
_TEXT_TYPES = ("text/", "application/json", "application/xhtml", "application/xml")


def _version() -> str:
    """This checkout's version (its pyproject.toml), else the installed package's."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text("utf-8")).get("project", {}) if pyproject.is_file() else {}
    return str(project["version"]) if project.get("name") == "vqgan-studio" else metadata.version("vqgan-studio")


USER_AGENT = f"vqgan-studio/{_version()}"


class _MirrorFailed(Exception):
    """This mirror did not give the file (a cut connection, a web page); the next one is tried."""


def part_path(dest: str | os.PathLike[str]) -> Path:
    """Where the partial download of ``dest`` is kept (``dest`` + ``.part``)."""
    return Path(dest).with_name(Path(dest).name + PART_SUFFIX)


def tqdm_progress(description: str) -> tuple[ProgressCallback, Callable[[], None]]:
    """A progress callback drawing a tqdm bar on stderr (from its first call, so nothing is drawn
    for a file that is already there), and the function that closes it."""
    from tqdm import tqdm

    bars: list[Any] = []

    def callback(done: int, total: int | None) -> None:
        if not bars:
            bars.append(tqdm(total=total, initial=done, desc=description, unit="B", unit_scale=True,
                             file=sys.stderr, dynamic_ncols=True))
        bars[0].total = total
        bars[0].update(done - bars[0].n)

    return callback, lambda: None if not bars else bars[0].close()


def download_file(urls: Sequence[str], dest: str | os.PathLike[str], *, sha256: str | None, size: int | None,
                  progress: ProgressCallback | None = None, timeout: float = 60, binary: bool = True) -> Path:
    """Download ``dest`` from the first of ``urls`` that works, resuming ``dest.part``, checking
    ``size`` and ``sha256`` (or a leading part of it; None when unpublished), renaming it into place
    atomically and caching its digest in a sidecar. ``progress`` is called with ``(bytes_done,
    total_or_None)`` (a tqdm bar when None); with ``binary``, a mirror answering with text (an error
    or sign-in page) has failed; ``timeout`` is in seconds.

    Raises:
        WeightsError: Every mirror failed (the partial file is kept for a later resume), the
            disk is full, or the finished file has the wrong size or hash (it is deleted).
    """
    urls, dest = ([urls] if isinstance(urls, str) else list(urls)), Path(dest)
    if not urls:
        raise ValueError("download_file needs at least one URL")
    with download_lock(dest), requests.Session() as session:  # the lock makes the folder
        if dest.is_file() and (size is None or dest.stat().st_size == size) and (
                sha256 is None or digests.cached_sha256(dest).startswith(sha256.lower())):
            return dest  # downloaded by another process while this one waited
        if dest.exists():  # not the expected file, maybe someone's own: pooch would replace or keep it
            logger.warning("%s is not the expected file; it was renamed %s", dest, digests.move_aside(dest).name)
        progress, close = (progress, None) if progress else tqdm_progress(dest.name)
        session.max_redirects = MAX_REDIRECTS
        fetch = _Resuming(session, part_path(dest), (sha256 or "").lower(), size, progress, timeout, binary)
        whole = fetch.sha256 if len(fetch.sha256) == 64 else None  # pooch compares whole digests; fetch prefixes
        failures: list[str] = []
        try:
            for url in urls:
                try:
                    with _quiet(pooch.get_logger()):  # its "Downloading ..." lines would cut through the bar
                        pooch.retrieve(url, known_hash=whole, fname=dest.name, path=dest.parent, downloader=fetch)
                    digests.write_sidecar(dest, fetch.digest)
                    return dest
                except (requests.RequestException, _MirrorFailed) as error:
                    logger.warning("could not download %s from %s: %s", dest.name, url, _reason(error))
                    failures.append(f"{url} ({_reason(error)})")
                except ValueError:  # pooch's sha256 check failed, and it deleted the file
                    if whole is None:
                        raise
                    raise _mismatch(dest, f"sha256 {fetch.digest}", whole) from None
                except OSError as error:  # pooch could not make or write into the folder
                    raise _write_error(error, fetch.part) from error
        finally:
            if close is not None:
                close()
    kept = " (the partial file is kept and resumes next time)" if fetch.part.exists() else ""
    raise WeightsError(f"could not download {dest.name} from {' or '.join(failures)}{kept}; check your internet "
                       f"connection and run the command again, or download it by hand and save it as {dest}.")


@contextlib.contextmanager
def _quiet(log: logging.Logger) -> Iterator[None]:
    """``log`` says only warnings and errors in the block (its own level is restored after)."""
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _mismatch(dest: Path, actual: str, expected: object) -> WeightsError:
    """The error for a finished download that is not the expected file (already deleted)."""
    return WeightsError(f"the downloaded {dest.name} has {actual} instead of the expected {expected}, so it was "
                        "deleted; run the command again; if it keeps failing the mirror may have changed, download "
                        f"it by hand and save it as {dest}.")


class _Resuming:
    """A pooch downloader: completes the stable ``.part`` file (resuming it with an HTTP Range
    request), checks its size and a sha256 prefix (pooch checks whole digests), then hands it to
    pooch as its output file; ``digest`` is the sha256 of the file handed over."""

    def __init__(self, session: requests.Session, part: Path, sha256: str, size: int | None,
                 progress: ProgressCallback, timeout: float, binary: bool) -> None:
        self.session, self.part, self.sha256, self.size = session, part, sha256, size
        self.progress, self.timeout, self.binary, self.digest = progress, timeout, binary, ""

    def __call__(self, url: str, output_file: str, _pooch: object = None) -> None:
        """Leave the whole file of ``url`` in ``output_file``."""
        hasher = self._fill(url) or digests.sha256_state(self.part)  # None: the partial file was already whole
        dest, have = self.part.with_name(self.part.name.removesuffix(PART_SUFFIX)), self.part.stat().st_size
        self.digest = hasher.hexdigest()
        if self.size not in (None, have):
            self.part.unlink()
            raise _mismatch(dest, f"{have} bytes", self.size)
        if len(self.sha256) < 64 and not self.digest.startswith(self.sha256):  # pooch checks whole digests
            self.part.unlink()
            raise _mismatch(dest, f"sha256 {self.digest}", self.sha256)
        os.replace(self.part, output_file)

    def _fill(self, url: str) -> Any:
        """Complete ``part`` from ``url``, resuming it where the server allows; returns the sha256
        of its bytes, or None when nothing was streamed. A body that starts like text is refused
        when starting afresh; local write problems become a WeightsError, network ones propagate."""
        part, size = self.part, self.size
        offset = part.stat().st_size if part.exists() else 0  # a whole or too long one is answered 416
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with self.session.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            content_range = re.match(r"bytes\s+(\d+|\*)\S*/(\d+)", response.headers.get("Content-Range", ""))
            if response.status_code == 416 and offset:  # nothing past the partial file's end: whole, or not this file
                if content_range and int(content_range[2]) == offset:
                    self.progress(offset, offset)
                    return None
                logger.info("the partial %s does not fit the file on the server; starting again", part.name)
                part.unlink()
                return self._fill(url)
            response.raise_for_status()
            content_type = response.headers.get("Content-Type", "").lower()
            if self.binary and content_type.startswith(_TEXT_TYPES):
                raise _MirrorFailed(f"the server sent {content_type.split(';')[0]} instead of the file")
            if offset and response.status_code == 206 and not (content_range and content_range[1] == str(offset)):
                part.unlink()
                raise _MirrorFailed(f"the server resumed {part.name} elsewhere than at byte {offset}")
            if offset and response.status_code != 206:
                logger.info("the server ignored the resume request; restarting %s", part.name)
                offset = 0
            length = response.headers.get("Content-Length", "")
            done, total = offset, offset + int(length) if length.isdigit() else size
            response.raw.enforce_content_length = False  # keep what a cut connection gave: checked against total
            chunks = response.iter_content(CHUNK_BYTES)
            first = next(chunks, b"")
            if self.binary and not offset and looks_like_text(first):
                raise _MirrorFailed("the server sent a web page or other text instead of the file")
            hasher = digests.sha256_state(part) if offset else hashlib.sha256()
            self.progress(done, total)
            try:
                with contextlib.closing(_open_part(part, "ab" if offset else "wb")) as out:
                    for chunk in itertools.chain([first], chunks):
                        out.write(chunk)
                        hasher.update(chunk)
                        done += len(chunk)
                        self.progress(done, total)
            except requests.RequestException:
                raise
            except OSError as error:
                raise _write_error(error, part) from error
        if total is not None and done < total:
            raise _MirrorFailed(f"the connection closed after {done} of {total} bytes")
        return hasher


def _open_part(part: Path, mode: str) -> IO[bytes]:
    """Open the partial file for writing (a seam for tests that simulate a full disk)."""
    return open(part, mode)


def _write_error(error: OSError, part: Path) -> WeightsError:
    """The user-facing error for a failure to write into the weights folder."""
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return WeightsError(f"the disk is full while downloading {part.name.removesuffix(PART_SUFFIX)} into "
                            f"{part.parent}; the partial file {part.name} was kept for resuming, so free some space "
                            "or choose another --weights-dir and run the command again.")
    reason = error.strerror or getattr(error.__cause__, "strerror", None) or error  # pooch wraps its own
    return WeightsError(f"cannot write {part} ({reason}); check the folder's permissions or choose another "
                        "--weights-dir.")


def _reason(error: BaseException) -> str:
    """A short description of why a mirror failed."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return " ".join(f"HTTP {error.response.status_code} {error.response.reason}".split())
    if isinstance(error, requests.TooManyRedirects):
        return f"more than {MAX_REDIRECTS} redirects: the server redirects in a loop"
    cause: BaseException | None = error
    while cause is not None:  # requests wraps the socket's error (connection refused, no such host)
        if isinstance(cause, OSError) and not isinstance(cause, requests.RequestException) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return str(error) or type(error).__name__


def looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a download are text (HTML, JSON, a message), not a binary
    file: no NUL byte and nothing outside printable ASCII and whitespace in the first 512."""
    sample = head[:512]
    return bool(sample) and b"\x00" not in sample and all(32 <= b < 127 or b in b"\t\n\r\f" for b in sample)


def download_member(urls: Sequence[str], dest: str | os.PathLike[str], member: str, *,
                    progress: ProgressCallback | None = None) -> Path:
    """Download a zip (resuming like :func:`download_file`), keep only ``member`` as ``dest``, and delete the zip.

    Raises:
        WeightsError: the download failed, the file is not a zip, lacks ``member``, or claims
            to unpack to far more than its size.
    """
    dest = Path(dest)
    with download_lock(dest):
        if dest.is_file():  # unpacked by another process while this one waited
            return dest
        archive = download_file(urls, dest.with_name(dest.name + ".zip"), sha256=None, size=None, progress=progress)
        try:
            with zipfile.ZipFile(archive) as opened:
                infos = [info for info in opened.infolist() if info.filename.rsplit("/", 1)[-1] == member]
                if len(infos) != 1:
                    raise WeightsError(f"the downloaded {archive.name} holds no single {member}; the mirror may "
                                       f"have changed: download it by hand and save its {member} as {dest}.")
                if infos[0].file_size > 4 * archive.stat().st_size + 64 * 2**20:
                    raise WeightsError(f"the downloaded {archive.name} claims {member} unpacks to "
                                       f"{infos[0].file_size} bytes, far more than a checkpoint; it was not unpacked.")
                with opened.open(infos[0]) as source, open(dest.with_name(dest.name + ".unpacking"), "wb") as target:
                    shutil.copyfileobj(source, target, CHUNK_BYTES)
                os.replace(target.name, dest)
        except zipfile.BadZipFile:
            digests.remove_file(archive)
            raise WeightsError(f"the downloaded {archive.name} is not a zip file, so it was deleted; run the "
                               "command again, or download it by hand.") from None
        except OSError as error:
            raise _write_error(error, part_path(dest)) from error
        digests.remove_file(archive)
        digests.write_sidecar(dest, digests.sha256_of(dest))
    return dest
