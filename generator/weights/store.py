"""The weights registry (its entries are in :mod:`generator.weights.registry`) and where its files are.

:func:`ensure` returns the path of a present and verified file, downloading it on first use unless
offline mode forbids the network; :func:`resolve` accepts a registry name or a path to a local file,
so custom checkpoints work everywhere.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path

from generator.errors import WeightsError
from generator.weights import digests, download
from generator.weights.download import ProgressCallback
from generator.weights.registry import KINDS, REGISTRY, WeightFile

# The registry's facts are read through this module, which knows where the files are.
__all__ = ["KINDS", "REGISTRY", "SERVES", "WeightFile", "default_weights_dir", "ensure", "format_size", "get",
           "locate", "manual_instructions", "names_of_kind", "offline_mode", "resolve", "status", "weights_dir"]

logger = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "GENERATOR_WEIGHTS_DIR"
OFFLINE_ENV = "GENERATOR_OFFLINE"
DOWNLOAD_COMMAND = "python -m generator download"
_TRUE = ("1", "true", "yes", "on")


def weights_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding registry weights: ``override`` (``--weights-dir``), else
    ``$GENERATOR_WEIGHTS_DIR``, else :func:`default_weights_dir`."""
    if override is not None and str(override):
        return Path(override).expanduser().absolute()
    env = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    return Path(env).expanduser().absolute() if env else default_weights_dir()


def default_weights_dir() -> Path:
    """``weights/`` of the checkout when running from one; installed, the user's cache
    (``$XDG_CACHE_HOME/vqgan-studio/weights``, by default ``~/.cache/vqgan-studio/weights``)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "weights").is_dir():
        return checkout / "weights"
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(cache).expanduser().absolute() / "vqgan-studio" / "weights"


_root = weights_dir  # the functions below take a parameter called weights_dir


def offline_mode(flag: bool | None = None) -> bool:
    """Whether network access is forbidden: ``flag`` (``--offline``) when given, else whether
    ``$GENERATOR_OFFLINE`` is 1/true/yes/on."""
    if flag is not None:
        return bool(flag)
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def _alias_names() -> dict[str, str]:
    """Names other tools use for registry files (the stems of their file names) -> registry name."""
    names: dict[str, str] = {}
    for entry in REGISTRY.values():
        for alias in entry.aliases:
            names.setdefault(Path(alias).stem if entry.kind != "config" else Path(alias).name, entry.name)
    return names


def get(name: str) -> WeightFile:
    """The registry entry called ``name`` (or by a name another tool gives the same file,
    such as nerdyrodent's ``sflckr`` or ``vqgan_gumbel_f8_8192``).

    Raises:
        WeightsError: No such entry; the message suggests the closest names.
    """
    entry = REGISTRY.get(name) or REGISTRY.get(_alias_names().get(name, ""))
    if entry is not None:
        return entry
    close = difflib.get_close_matches(str(name).lower(), list(REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise WeightsError(f"there are no weights called {name!r}; {hint}run `{DOWNLOAD_COMMAND} --list` to see every "
                       "registry name.")


def format_size(size: int | None) -> str:
    """Human-readable byte count (decimal units), ``?`` when unknown."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def locate(entry: WeightFile, root: Path) -> Path:
    """Where ``entry``'s file is in ``root``: under its own name, else under an alias another
    tool saves it as; its own name when neither exists (where a download goes)."""
    own = root / entry.filename
    if own.is_file():
        return own
    return next((root / alias for alias in entry.aliases if (root / alias).is_file()), own)


def _inspect(entry: WeightFile, path: Path) -> tuple[str, str]:
    """(status, reason) of the file at ``path``; the reason explains "corrupt"."""
    if not path.is_file():
        return ("partial" if download.part_path(path).exists() else "missing"), ""
    actual_size, expected_size, expected_hash, what = path.stat().st_size, entry.size, entry.sha256, "instead of"
    if expected_hash is None:  # no published hash: the one seen on the first download, if any
        observed = digests.observed_hash(path.parent, entry.name)
        if observed is None:
            return "unverified", ""
        expected_size, expected_hash, what = observed["size"], observed["sha256"], "but was"
    if expected_size is not None and actual_size != expected_size:
        return "corrupt", f"it has {actual_size} bytes {what} {expected_size}"
    digest = digests.cached_sha256(path)
    if not digest.startswith(expected_hash):
        return "corrupt", f"its sha256 is {digest} {what} {expected_hash}"
    return "verified", ""


def status(name: str, weights_dir: str | os.PathLike[str] | None = None) -> str:
    """State of a registry file on disk, without touching the network: "missing", "partial" (only
    a ``.part`` exists), "verified" (sha256 matches), "unverified" (present, no published hash) or
    "corrupt" (size or hash mismatch)."""
    entry = get(name)
    return _inspect(entry, locate(entry, _root(weights_dir)))[0]


def manual_instructions(entry: WeightFile, path: Path) -> str:
    """One sentence telling the user how to fetch a ``manual`` entry by hand."""
    return (f"{entry.name} ({entry.description}) must be downloaded by hand because its link is a share page: open "
            f"{entry.urls[0]} in a browser, download {entry.source_file or 'the file'} and save it as {path}.")


def ensure(name: str, *, weights_dir: str | os.PathLike[str] | None = None, offline: bool | None = None,
           progress: ProgressCallback | None = None) -> Path:
    """Path of the present and verified file ``name``, downloading it (and companions) if needed.

    A file that fails its check is moved aside (renamed ``<file>.rejected``, never deleted: it may be
    a user's own copy) and fetched again, except a ``manual`` one, which is reported. The hash seen on
    the first download of a file without a published one is recorded and checked from then on.
    ``offline`` None reads ``$GENERATOR_OFFLINE``; ``progress`` None draws a tqdm bar on stderr.

    Raises:
        WeightsError: Unknown name; offline and missing; a manual entry missing; the download failed.
    """
    entry, root = get(name), _root(weights_dir)
    path, command = locate(entry, root), f"`{DOWNLOAD_COMMAND} {entry.name}`"
    state, reason = _inspect(entry, path)
    if state == "corrupt" and entry.manual:  # fetched by hand: never touch the user's copy
        raise WeightsError(f"{path} is not the expected {entry.name} file ({reason}); replace it with "
                           f"{entry.source_file or 'the file'} from {entry.urls[0]}, or pass it as a local path.")
    if state == "corrupt":
        aside = digests.move_aside(path)
        logger.warning("%s is not the expected %s file (%s); it was renamed %s and will be fetched again.",
                       path, entry.name, reason, aside.name)
        if offline_mode(offline):
            raise WeightsError(f"{path} is not the expected {entry.name} file ({reason}), so it was renamed "
                               f"{aside.name}, and offline mode forbids downloading it again; run {command} while "
                               "online, or pass a local file path.")
        path = root / entry.filename
    if state not in ("verified", "unverified"):
        if entry.manual:
            raise WeightsError(manual_instructions(entry, path))
        if offline_mode(offline):
            raise WeightsError(f"{entry.name} (file {entry.filename}, {format_size(entry.size)}) is not in {root} "
                               f"and --offline is set; download it with {command} on a machine with internet, or "
                               "pass a local file path.")
        logger.info("downloading %s (%s) into %s", entry.filename, format_size(entry.size), root)
        if entry.archive_member:
            download.download_member(entry.urls, path, entry.archive_member, progress=progress)
        else:
            download.download_file(entry.urls, path, sha256=entry.sha256, size=entry.size, progress=progress,
                                   binary=entry.binary)
        if entry.sha256 is None:
            logger.info("%s has no published hash; recorded sha256 %s to check it against from now on",
                        entry.filename, digests.record_observed_hash(root, entry.name, path))
    for companion in entry.companions:
        ensure(companion, weights_dir=root, offline=offline, progress=progress)
    return path


SERVES = {kind: (kind,) for kind in KINDS} | {"vqgan": ("vqgan", "transformer")}
"""The kinds of registry file that can serve as each kind: a transformer's first stage is a VQGAN."""


def names_of_kind(kind: str) -> list[str]:
    """Registry names that can serve as ``kind``, in registry order."""
    return [name for name, entry in REGISTRY.items() if entry.kind in SERVES[kind]]


def resolve(name_or_path: str | os.PathLike[str], *, kind: str, weights_dir: str | os.PathLike[str] | None = None,
            offline: bool | None = None, progress: ProgressCallback | None = None) -> Path:
    """Turn a registry name (fetched by :func:`ensure` when missing) or the path of an existing
    file (returned as is, without any network access) into the path of a usable ``kind`` file.

    Raises:
        WeightsError: No such file; the name is of another kind or unknown; :func:`ensure` failed.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    text = os.fspath(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.is_file():
        return candidate
    known = ", ".join(names_of_kind(kind))
    entry = REGISTRY.get(text) or REGISTRY.get(_alias_names().get(text, ""))
    if entry is not None and entry.kind not in SERVES[kind]:
        raise WeightsError(f"{text} is {entry.kind} weights, not {kind} weights; use one of {known} or a local "
                           "file path.")
    if entry is not None:
        return ensure(entry.name, weights_dir=weights_dir, offline=offline, progress=progress)
    if candidate.is_dir():
        raise WeightsError(f"{candidate} is a directory; give the path of the {kind} file itself.")
    if any(sep in text for sep in (os.sep, "/", os.altsep or "/")) or text.startswith("~") or Path(text).suffix:
        raise WeightsError(f"file {candidate} does not exist; check the path, or use a registry {kind} name such "
                           f"as {known}.")
    raise WeightsError(f"{text!r} is neither a file nor a known {kind} name; use one of {known} (see "
                       f"`{DOWNLOAD_COMMAND} --list`) or a local file path.")
