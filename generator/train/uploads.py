"""The Train tab's uploads: checked, copied into a private folder of the outputs area
(``.train-uploads/``: hidden, so no gallery lists it and no visitor reads it back), and swept
away once no training run trains on them any more."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from datetime import datetime
from pathlib import Path

from generator.errors import InputError
from generator.io.atomic_files import output_error
from generator.io.images import IMAGE_SUFFIXES, image_size

UPLOADS = ".train-uploads"  # in the outputs folder
UPLOADS_GRACE = 3600  # seconds an upload folder no run trains on is kept (a run may be about to start on it)


def check_uploads(images: tuple[str, ...]) -> None:
    """Refuse no uploads, or an upload that is no image by its name, with one sentence.

    Raises:
        InputError: what is wrong.
    """
    if not images:
        raise InputError("upload the training images first (PNG, JPEG or WebP; a few dozen or more).")
    for path in images:
        if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{Path(path).name} is not an image; upload PNG, JPEG or WebP images only.")


def copy_uploads(outputs: Path, images: tuple[str, ...], name: str) -> tuple[Path, list[str]]:
    """``images`` copied into a new private folder ``name`` of the outputs folder's uploads
    (the data folder's name becomes the model's default name); (that folder, the uploads left
    out as unreadable).

    Raises:
        InputError: no upload can be read as an image.
        OutputError: the folder cannot be written.
    """
    root = outputs / UPLOADS / f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
    folder = root / name
    skipped = []
    try:
        folder.mkdir(parents=True)
        for index, path in enumerate(images):
            try:
                image_size(path, what="training image")  # the header only: is it an image, within the limits
            except InputError:
                skipped.append(Path(path).name)
                continue
            shutil.copyfile(path, folder / f"{index:05d}{Path(path).suffix.lower()}")
    except OSError as error:
        shutil.rmtree(root, ignore_errors=True)
        raise output_error(error, folder) from error
    if len(skipped) == len(images):
        shutil.rmtree(root, ignore_errors=True)
        raise InputError("none of the uploads can be read as an image; upload PNG, JPEG or WebP images.")
    return folder, skipped


def sweep_uploads(outputs: Path, grace: float = UPLOADS_GRACE) -> list[Path]:
    """Remove the upload folders that no training run in ``outputs`` trains on any more (its
    run folder was deleted, or it never started) and that are older than ``grace`` seconds; the
    uploads of a run that exists stay, since resuming it reads them. Returns what was removed."""
    root = outputs / UPLOADS
    if not root.is_dir():
        return []
    used = []
    for config in outputs.glob("train-*/config.json"):
        try:
            record = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        data = record.get("data") or (record.get("settings") or {}).get("data") if isinstance(record, dict) else None
        if isinstance(data, str):
            used.append(Path(data).resolve())
    removed, now = [], time.time()
    for folder in root.iterdir():
        try:
            stale = folder.is_dir() and now - folder.stat().st_mtime > grace
        except OSError:
            continue
        if stale and not any(path.is_relative_to(folder.resolve()) for path in used):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
