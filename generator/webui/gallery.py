"""Past runs, read from the outputs folder for the web UI's gallery (newest first), and what
each visitor may do with them.

The web UI records which visitor (a browser or API client, by the digest of its secret) made
each run folder, in the owners index outside the outputs folder
(:class:`generator.webui.owners.OwnersIndex`). A visitor sees, deletes and downloads their
own runs; with ``--shared-gallery`` everyone sees and downloads every run (runs of the
command line, which have no owner, only appear there), and still deletes only their own.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator import modes
from generator.drive import RUN_RECORD, RunRecord
from generator.errors import InputError, OutputError, summary
from generator.io.atomic_files import atomic_path
from generator.io.outputs import MODE_KEY, PROMPT_KEY, read_png_text
from generator.webui.owners import OwnersIndex

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PastRun:
    """A finished (or stopped) run folder.

    Attributes:
        folder: the run folder.
        image: its ``final.png``.
        mode: ``text-to-image`` or ``sample``.
        title: the prompt, or the prior's name for samples.
        config: the resolved config (``config.json``).
        owner: the owner id of the browser session that wrote it (None: the command line, or
            a run made before owners were recorded).
    """

    folder: Path
    image: Path
    mode: str
    title: str
    config: dict[str, Any]
    owner: str | None = None

    @property
    def caption(self) -> str:
        """The gallery caption: the title's start and the seed."""
        seed = self.config.get("seed")
        return f"{self.title[:60]} · seed {seed}" if seed is not None else self.title[:60]


def _read(folder: Path) -> PastRun | None:
    image = folder / "final.png"
    if not image.is_file():
        return None
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a run whose config is missing cannot be reloaded; skip it
    if not isinstance(config, dict):
        return None
    mode, label = _recorded_mode(folder, image)
    known = modes.recorded(mode)
    config = known.recorded_settings(config, folder) if known is not None else config
    return PastRun(folder, image, mode, label or str(config.get("prompts") or "(image prompts)"), config)


def _recorded_mode(folder: Path, image: Path) -> tuple[str, str | None]:
    """(mode, label) as the run recorded them: ``run.json``, else the final PNG's text chunks
    (runs made before run.json existed)."""
    try:
        record = json.loads((folder / RUN_RECORD).read_text(encoding="utf-8"))
        return str(record["mode"]), str(record.get("label") or "") or None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        text = read_png_text(image)
    except InputError:
        return modes.DEFAULT.name, None
    return text.get(MODE_KEY, modes.DEFAULT.name), text.get(PROMPT_KEY)


def list_runs(outputs_dir: Path, limit: int = 60, owner: str | None = None,
              owners: OwnersIndex | None = None) -> list[PastRun]:
    """The newest ``limit`` run folders in ``outputs_dir`` that hold a final.png and config.json.

    Args:
        outputs_dir: the outputs folder.
        limit: at most this many runs.
        owner: only the runs this visitor id made (see :func:`record_owner`); None: every run
            (the shared gallery), also those of the command line.
        owners: the owners index (default: the one in the outputs folder's default state folder).
    """
    outputs_dir = Path(outputs_dir)
    if not outputs_dir.is_dir():
        return []
    owners = (owners or OwnersIndex(outputs_dir)).read()
    folders = sorted((p for p in outputs_dir.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (owner is None or owners.get(p.name) == owner)),
                     key=lambda p: (p / "final.png").stat().st_mtime if (p / "final.png").exists() else 0,
                     reverse=True)
    runs = []
    for folder in folders:
        run = _read(folder)
        if run is not None:
            runs.append(PastRun(run.folder, run.image, run.mode, run.title, run.config, owners.get(folder.name)))
            if len(runs) == limit:
                break
    return runs


_TRASH_PREFIX = ".deleting-"


def record_owner(owners: OwnersIndex, folder: str | os.PathLike[str], owner: str) -> bool:
    """Record that the visitor ``owner`` made the run folder ``folder``.

    Args:
        owners: the owners index of the outputs folder.
        folder: the run folder (a path directly in the outputs folder, or its name).
        owner: the visitor id (non-empty).

    Returns:
        True when recorded (or already recorded for ``owner``); False when ``folder`` is no
        folder directly in the outputs folder or already belongs to another visitor (a folder
        is never handed over). Record run folders only (see :func:`record_session_owner`).

    Raises:
        ValueError: ``owner`` is empty.
        OutputError: the index cannot be written.
    """
    if not owner:
        raise ValueError("owner must be a non-empty id")
    name = _folder_name(owners.outputs_dir, folder)
    if name is None or not (owners.outputs_dir / name).is_dir():
        return False
    return owners.record(name, owner)


def record_session_owner(owners: OwnersIndex, record: RunRecord | None, owner: str | None) -> bool:
    """:func:`record_owner` for a web UI job's :class:`~generator.drive.RunRecord`, once the
    job ended however it ended. Upscales, which write into the shared ``upscaled/`` folder,
    jobs that wrote nothing and an empty owner are skipped.

    Returns:
        Whether an owner was recorded.
    """
    mode = modes.recorded(record.mode) if record is not None else None
    if not owner or record is None or record.folder is None or mode is None or not mode.run_folders:
        return False
    return record_owner(owners, record.folder, owner)


def _folder_name(outputs_dir: Path, folder: str | os.PathLike[str]) -> str | None:
    """The name of a run folder directly in ``outputs_dir`` (given as a name or a path), or
    None for anything else: ``..``, hidden names, other folders."""
    text = os.fspath(folder)
    path = Path(text)
    if path.is_absolute() or os.sep in text or "/" in text or "\\" in text:
        try:
            if path.resolve().parent != outputs_dir.resolve():
                return None
        except (OSError, ValueError):
            return None
        text = path.name
    if not text or text.startswith(".") or "\x00" in text:
        return None
    return text


def _owned_folder(owners: OwnersIndex, folder_name: str, owner: str | None, shared: bool, *,
                  action: str, own_only: bool) -> Path:
    """The run folder ``folder_name`` if this session may ``action`` it, else one sentence.

    In a private gallery, a refused name gets the same sentence whether the run is missing,
    another session's or no run at all, so that sessions learn nothing of each other's runs.
    """
    outputs_dir = owners.outputs_dir
    shown = repr(folder_name if len(str(folder_name)) <= 60 else str(folder_name)[:57] + "...")
    not_yours = InputError(f"{shown} is not one of your runs; choose a run in the gallery to {action}.")
    name = _folder_name(outputs_dir, folder_name) if isinstance(folder_name, str) and "/" not in folder_name \
        and "\\" not in folder_name else None
    if name is None or not owner and own_only:
        raise not_yours
    folder = outputs_dir / name
    if folder.is_symlink() or not folder.is_dir():
        raise not_yours
    recorded = owners.owner(name)
    if owner and recorded == owner:
        return folder
    if shared and not own_only:
        return folder
    if shared:  # visible in the shared gallery: say why
        raise InputError(f"{shown} was made by another session (or the command line); you can {action} only "
                         "your own runs.")
    raise not_yours


def delete_run(owners: OwnersIndex, folder_name: str, owner: str, shared: bool = False) -> None:
    """Delete one of ``owner``'s run folders: moved away atomically (renamed to a hidden name,
    so it leaves the gallery at once), then removed, and dropped from the owners index.

    Args:
        owners: the owners index of the outputs folder.
        folder_name: the run folder's name (as :attr:`PastRun.folder` ``.name``).
        owner: the visitor id.
        shared: the gallery is shared (``--shared-gallery``): a run of someone else is
            visible there, so its refusal says so; own runs only all the same.

    Raises:
        InputError: not a run of ``owner`` (another session's, the command line's, missing,
            or a name outside the outputs folder: ``..``, an absolute path, a hidden name);
            one sentence, the same for all of these in a private gallery.
        OutputError: the folder could not be moved away.
    """
    outputs_dir = owners.outputs_dir
    with owners.locked():
        folder = _owned_folder(owners, folder_name, owner, shared, action="delete", own_only=True)
        trash = outputs_dir / f"{_TRASH_PREFIX}{secrets.token_hex(4)}-{folder.name}"
        try:
            os.rename(folder, trash)
        except FileNotFoundError:  # deleted meanwhile (another tab of this session)
            raise InputError(f"{folder.name!r} is not one of your runs; choose a run in the gallery to "
                             "delete.") from None
        except OSError as error:
            raise OutputError(f"cannot delete the run {folder.name} ({error.strerror or summary(error)}); "
                              "check the outputs folder's permissions.") from error
        owners.forget(folder.name)
    try:
        shutil.rmtree(trash)
    except OSError as error:  # out of the gallery already; what is left is hidden
        logger.warning("could not remove all of %s (%s)", trash, summary(error))
    logger.info("deleted the run %s", folder.name)


def zip_run(owners: OwnersIndex, folder_name: str, owner: str | None, shared: bool = False,
            dest_dir: Path | None = None) -> Path:
    """A zip of a run folder (every file under it; symlinks are skipped), for download.

    Args:
        owners: the owners index of the outputs folder.
        folder_name: the run folder's name.
        owner: the visitor id.
        shared: the gallery is shared (``--shared-gallery``): any run may be zipped.
        dest_dir: where the zip goes (default: a new temporary folder, which Gradio serves).

    Returns:
        ``<dest_dir>/<folder name>.zip`` (entries under ``<folder name>/``).

    Raises:
        InputError: not a run this session may download (see :func:`delete_run`).
        OutputError: the zip cannot be written.
    """
    folder = _owned_folder(owners, folder_name, owner, shared, action="download", own_only=False)
    dest_dir = Path(dest_dir) if dest_dir is not None else Path(tempfile.mkdtemp(prefix="vqgan-run-"))
    dest = dest_dir / f"{folder.name}.zip"
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for root, dirs, files in os.walk(folder):  # never follows a symlinked folder
            dirs.sort()
            for file_name in sorted(files):
                path = Path(root) / file_name
                if path.is_symlink() or not path.is_file():
                    continue
                stored = path.suffix.lower() in (".png", ".mp4", ".gif", ".zip", ".safetensors")
                archive.write(path, arcname=f"{folder.name}/{path.relative_to(folder).as_posix()}",
                              compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return dest
