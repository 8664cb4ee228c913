"""Run outputs: ``<out>/<YYYYMMDD>-<HHMMSS>-<slug>-<seed>/`` with ``final.png`` (config in a
text chunk), ``config.json``, ``frames/NNNNNN.png`` and ``video.mp4``, written by the sinks.

Every file is written to a temporary name beside its destination, fsynced, then published
with a hard link, which fails if the destination exists: nothing is ever overwritten and a
crash never leaves a half-written file under a final name.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import unicodedata
import zipfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from generator.errors import GeneratorError, InputError, OutputError, summary
from generator.io import video
from generator.io.atomic_files import atomic_path, output_error, write_bytes_atomic
from generator.io.images import png_bytes
from generator.io.latents import LATENT_FILE, latent_bytes

logger = logging.getLogger(__name__)

CONFIG_KEY = "generator-config"  # PNG text key holding the resolved config as JSON
PROMPT_KEY = "prompt"
SEED_KEY = "seed"
MODE_KEY = "generator-mode"  # which command made it: text-to-image, sample, upscale
SOFTWARE = "vqgan-studio"
FRAMES_DIR = "frames"

_CONFIG_HINT = "give a final.png written by this tool or its config.json"
_PNG_HINT = "give an intact PNG, such as a final.png written by this tool, or its config.json"
_TRANSLITERATE = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
                                "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ł": "l", "Ł": "L",
                                "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th"})
_RESERVED_NAMES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                             *(f"lpt{i}" for i in range(10))})  # device names on Windows


def slugify(text: str, max_length: int = 40) -> str:
    """A file-name-safe slug of ``text`` (at most ``max_length`` >= 8 chars of ``a-z0-9-``).

    Accents are transliterated, other characters dropped, runs of anything else become one
    ``-``; a long slug is cut at a word boundary where possible. Windows device names
    (``con``, ``nul``, ...) get a ``-x`` suffix; nothing left gives ``"untitled"``.
    """
    if max_length < 8:
        raise ValueError(f"max_length must be at least 8, got {max_length}")
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    if len(slug) > max_length:
        cut = slug[:max_length]
        boundary = cut.rfind("-")
        if slug[max_length] != "-" and boundary >= max_length // 2:
            cut = cut[:boundary]  # keep whole words unless that loses more than half
        slug = cut.strip("-")
    if not slug:
        return "untitled"
    return f"{slug}-x" if slug in _RESERVED_NAMES else slug


def create_run_folder(out_dir: Path, *, prompt: str, seed: int,
                      now: datetime | None = None) -> Path:
    """Create and return a new folder ``<out_dir>/<YYYYMMDD>-<HHMMSS>-<slug>-<seed>``.

    An existing folder is never reused: on a collision ``-2``, ``-3``, ... is appended.

    Args:
        out_dir: The outputs folder (created with its parents if missing).
        prompt: The prompt, slugified into the name.
        seed: The run's seed.
        now: The time in the name (default: the local time now).

    Raises:
        OutputError: If the folder cannot be created.
    """
    folder = new_folder(Path(out_dir), f"{now or datetime.now():%Y%m%d-%H%M%S}-{slugify(prompt)}-{int(seed)}")
    logger.info("writing the outputs of this run into %s", folder)
    return folder


def new_folder(out_dir: Path, base: str) -> Path:
    """Create and return the folder ``<out_dir>/<base>`` (and ``out_dir`` with its parents); an
    existing folder is never reused: on a collision ``-2``, ``-3``, ... is appended.

    Raises:
        OutputError: If the folder cannot be created.
    """
    out_dir = Path(out_dir)
    folder = out_dir / base
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for attempt in itertools.count(2):  # ends: only finitely many folders exist
            try:
                folder.mkdir()
            except FileExistsError:
                folder = out_dir / f"{base}-{attempt}"
                continue
            return folder
    except OSError as error:
        raise output_error(error, folder, out_dir) from error
    raise AssertionError("unreachable")


def save_png(image: Image.Image, path: Path, *, text: Mapping[str, str] | None = None,
             folder: Path | None = None) -> Path:
    """Save ``image`` as a new PNG with one text chunk per ``text`` item; returns ``path``.

    Latin-1 values go into ``tEXt`` chunks, others into UTF-8 ``iTXt``; long values are
    compressed. ``I;16``, RGBA and the other PNG modes are kept as they are. Written
    atomically and never over an existing file (see ``write_bytes_atomic``).
    """
    return write_bytes_atomic(path, png_bytes(image, text), folder=folder)


def save_json(data: Mapping[str, Any], path: Path, *, folder: Path | None = None) -> Path:
    """Save ``data`` as a new UTF-8 JSON file (indent 2, sorted keys); returns ``path``."""
    text = json.dumps(dict(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"), folder=folder)


def read_png_text(path: Path) -> dict[str, str]:
    """All text chunks (``tEXt``, ``zTXt``, ``iTXt``) of a PNG file.

    Raises:
        InputError: If the file is missing, unreadable, truncated or not a PNG.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise InputError(f"{path} is not a PNG file but {image.format}; {_PNG_HINT}.")
            text = dict(image.text)  # this loads the image: text chunks may follow the pixels
    except GeneratorError:
        raise
    except FileNotFoundError as error:
        raise InputError(f"{path} does not exist; {_PNG_HINT}.") from error
    except Exception as error:  # Pillow raises many types for broken files
        raise InputError(f"{path} cannot be read as a PNG image ({summary(error)}); "
                         f"{_PNG_HINT}.") from error
    return {str(key): str(value) for key, value in text.items()}


def config_from_png(path: Path) -> dict[str, Any]:
    """The generator config embedded in a ``final.png``, or read from a ``config.json``.

    Raises:
        InputError: If the file cannot be read, is neither kind, or holds no config.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        text = read_png_text(path)
        if CONFIG_KEY not in text:
            raise InputError(f"{path} has no embedded generator config; {_CONFIG_HINT}.")
        return _parse_config(text[CONFIG_KEY], f"the generator config embedded in {path}")
    try:
        return _parse_config(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError as error:
        raise InputError(f"{path} does not exist; {_CONFIG_HINT}.") from error
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path} cannot be read ({summary(error)}); {_CONFIG_HINT}.") from error


def mode_of_output(path: Path) -> str | None:
    """The name of the mode that made an output, as recorded in a PNG or in the ``run.json``
    beside a ``config.json``; None when none is recorded (older outputs: the registry's
    default mode made them, see :func:`generator.modes.recorded`).

    Raises:
        InputError: the file cannot be read.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        return read_png_text(path).get(MODE_KEY)
    try:
        record = json.loads((path.parent / "run.json").read_text(encoding="utf-8"))
        return str(record["mode"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RunWriter:
    """Writes the files of one run into its folder: the helper the CLI and the UI share.

    Nothing is overwritten and every write is atomic; an ``OSError`` becomes an
    ``OutputError`` naming the run folder, whose files are kept.
    """

    def __init__(self, folder: Path | Callable[[], Path]) -> None:
        """Write into ``folder`` (created if missing), or into the folder that ``folder()``
        creates on the first write, so a run that fails its checks leaves nothing behind
        (see :meth:`new`)."""
        self._folder = Path(folder) if not callable(folder) else None
        self._create = folder if callable(folder) else None
        self._written: list[Path] = []

    @classmethod
    def new(cls, out_dir: Path, *, prompt: str, seed: int) -> RunWriter:
        """A writer whose run folder ``<out_dir>/<date>-<time>-<slug>-<seed>`` is created by
        its first write (see :func:`create_run_folder`)."""
        return cls(lambda: create_run_folder(Path(out_dir), prompt=prompt, seed=seed))

    @property
    def folder(self) -> Path | None:
        """The run folder, or None while nothing has been written by a lazy writer."""
        return self._folder

    @property
    def written(self) -> list[Path]:
        """Every file written so far, in order (a copy)."""
        return list(self._written)

    def _root(self) -> Path:
        if self._folder is None:
            assert self._create is not None
            self._folder = self._create()
        return self._folder

    def write_frame(self, step: int, image: Image.Image) -> Path:
        """Save an animation frame as ``frames/<step as 6 digits>.png``; returns its path."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        frames_dir = self._make_dir(self._root() / FRAMES_DIR)
        return self._record(save_png(image, frames_dir / f"{step:06d}.png", folder=self._folder))

    def write_final(self, image: Image.Image, *, config: Mapping[str, Any], prompt: str,
                    seed: int, mode: str, name: str = "final.png", config_name: str = "config.json") -> Path:
        """Save the final PNG (prompt, seed, ``config`` embedded), then ``config.json``.

        The PNG goes first: it alone holds the image and everything needed to re-run, so a
        crash between the two files loses nothing. If the PNG cannot be written (disk full),
        ``config.json`` is still attempted so the run can be repeated, then the error raised.
        ``config`` must be JSON-serialisable (checked before anything is written).

        Returns:
            The PNG's path.
        """
        _check_name(config_name, ".json")
        text = png_text(config, prompt=prompt, seed=seed, mode=mode)
        try:
            final = self.write_image(image, name, text=text)
        except OutputError:
            if not os.path.lexists(self._root() / name):
                self._save_config_best_effort(config, config_name)
            raise
        self.write_json(config, config_name)
        return final

    def write_json(self, data: Mapping[str, Any], name: str) -> Path:
        """Save a JSON file (e.g. ``run.json``) in the run folder; returns its path."""
        path = self._make_dir(self._root()) / _check_name(name, ".json")
        return self._record(save_json(data, path, folder=self._folder))

    def write_image(self, image: Image.Image, name: str, *,
                    text: Mapping[str, str] | None = None) -> Path:
        """Save an extra PNG (e.g. ``final_x4.png``) in the run folder; returns its path."""
        path = self._make_dir(self._root()) / _check_name(name, ".png")
        return self._record(save_png(image, path, text=text, folder=self._folder))

    def write_latent(self, latent: Any) -> Path:
        """Save the run's latent (1, C, h, w) as ``latent.safetensors``, so the run can be continued."""
        path = self._make_dir(self._root()) / LATENT_FILE
        return self._record(write_bytes_atomic(path, latent_bytes(latent), folder=self._folder))

    def frames(self) -> list[Path]:
        """The frame files in ``frames/``, sorted by step number."""
        return _frame_files(self._folder) if self._folder is not None else []

    def write_video(self, *, fps: int = 10, mp4: bool = True, gif: bool = False) -> list[Path]:
        """Encode ``frames/`` into ``video.mp4`` and/or ``video.gif``; ``[]`` if no frames.

        Raises:
            OutputError: If encoding or writing fails; the frames are kept.
        """
        if not (mp4 or gif):
            return []
        frames = self.frames()
        if not frames or self._folder is None:
            logger.info("no frames were saved (give --save-every N), so no video was made")
            return []
        written = []
        if mp4:
            written.append(self._record(video.write_mp4(frames, self._folder / "video.mp4", fps=fps)))
        if gif:
            written.append(self._record(video.write_gif(frames, self._folder / "video.gif", fps=fps)))
        return written

    def _record(self, path: Path) -> Path:
        self._written.append(path)
        return path

    def _make_dir(self, folder: Path) -> Path:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise output_error(error, folder, self._folder) from error
        return folder

    def _save_config_best_effort(self, config: Mapping[str, Any], config_name: str) -> None:
        try:
            self.write_json(config, config_name)
        except OutputError as error:
            logger.warning("could not save %s either: %s", config_name, error)
        else:
            logger.warning("the final image was not saved, but %s was", config_name)


def free_path(folder: Path, stem: str, suffix: str = "", extension: str = ".png") -> Path:
    """``<stem><suffix><extension>`` in ``folder``, or with ``-2``, ``-3``, ... if taken."""
    candidate, counter = folder / f"{stem}{suffix}{extension}", 2
    while candidate.exists():
        candidate, counter = folder / f"{stem}{suffix}-{counter}{extension}", counter + 1
    return candidate


def png_text(config: Mapping[str, Any], *, prompt: str, seed: int, mode: str) -> dict[str, str]:
    """The text chunks of an output PNG: prompt, seed, mode and the config as JSON."""
    return {PROMPT_KEY: prompt, SEED_KEY: str(seed), MODE_KEY: mode,
            CONFIG_KEY: json.dumps(dict(config), sort_keys=True), "Software": SOFTWARE}


def zip_frames(folder: Path, dest: Path) -> Path:
    """Zip a run folder's ``frames/*.png`` (stored flat, in step order) into the new ``dest``.

    Raises:
        InputError: If the run folder has no frames.
        OutputError: If ``dest`` exists or cannot be written.
    """
    frames = _frame_files(Path(folder))
    if not frames:
        raise InputError(f"{folder} has no frames to zip; save frames during the run to "
                         "download them.")
    with (atomic_path(Path(dest)) as tmp,
          zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive):
        for frame in frames:  # stored: PNGs are compressed already
            archive.write(frame, arcname=frame.name)
    return Path(dest)


def _frame_files(folder: Path) -> list[Path]:
    frames_dir = folder / FRAMES_DIR
    if not frames_dir.is_dir():
        return []
    frames = [p for p in frames_dir.iterdir()
              if p.suffix == ".png" and re.fullmatch(r"[0-9]+", p.stem)]
    return sorted(frames, key=lambda p: int(p.stem))


def _check_name(name: str, suffix: str) -> str:
    if (name != Path(name).name or name.startswith(".") or "\\" in name
            or not name.lower().endswith(suffix) or len(name) <= len(suffix)):
        raise ValueError(f"{name!r} must be a plain file name ending in {suffix}")
    return name


def _parse_config(raw: str, what: str) -> dict[str, Any]:
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InputError(f"{what} is not valid JSON ({error.msg} at line {error.lineno}); "
                         f"{_CONFIG_HINT}.") from error
    if not isinstance(config, dict):
        raise InputError(f"{what} is not a JSON object; {_CONFIG_HINT}.")
    return config


def _is_latin1(text: str) -> bool:
    return all(ord(char) < 256 for char in text)


