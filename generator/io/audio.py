"""Reading the sound of a file a user gave (``--audio``, or a restyled video's sound track): mono
float32 samples decoded by the bundled ffmpeg into a pipe, always under
:data:`generator.io.ffmpeg.USER_SOUND_INPUT` (a local file in an audio or video container, never
a playlist or a list of other files)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from generator.errors import InputError
from generator.io.ffmpeg import REFUSED_FORMAT, USER_SOUND_INPUT, ffmpeg_exe, run_ffmpeg

SAMPLE_RATE = 22050
"""Samples per second of decoded sound (frequencies up to 11025 Hz)."""
SOUND_FILES = "WAV, MP3, FLAC, Ogg, M4A, AAC, AIFF, or a video with sound"
"""What a sound file may be, for messages."""


def _check_path(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"the audio file {path} does not exist; check its path.")


def _unreadable(path: Path, ffmpeg_output: str) -> InputError:
    """The one sentence for a sound file ffmpeg could not open, or one without a sound track."""
    if REFUSED_FORMAT in ffmpeg_output:
        return InputError(f"{path} is not a sound file this tool reads ({SOUND_FILES}); playlists and lists of "
                          "other files are refused, so give the sound file itself to --audio.")
    if "matches no streams" in ffmpeg_output or "does not contain any stream" in ffmpeg_output:
        return InputError(f"{path} has no sound track; give --audio a file with sound ({SOUND_FILES}).")
    lines = [re.sub(r"^(\[[^]]*\] )?(Error opening input( files)?: )?", "", line.strip()).rstrip(".")
             for line in ffmpeg_output.splitlines() if not line.startswith("Error opening input file ")]
    reason = next((line[:200] for line in reversed(lines) if line), "no sound stream")
    return InputError(f"{path} cannot be decoded as sound ({reason}); give --audio an intact sound file "
                      f"({SOUND_FILES}).")


def probe_audio(path: str | Path) -> None:
    """Check, from the file's header and without decoding it, that ``path`` is a local file with a
    sound track in a container this tool reads.

    Raises:
        InputError: missing, not a sound or video container, or without a sound track.
    """
    path = Path(path)
    _check_path(path)
    result = run_ffmpeg([*USER_SOUND_INPUT, "-i", str(path)])  # ffmpeg describes the input, then wants an output
    if not re.search(r"Stream #\S+.*?: Audio:", result.stderr):
        raise _unreadable(path, result.stderr if "Input #0" not in result.stderr else "matches no streams")


def read_audio(path: str | Path, *, seconds: float | None = None, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The sound of ``path`` (its first sound track), mixed down to mono: ``(n,)`` float32
    samples, nominally in [-1, 1], at ``rate`` per second.

    Args:
        path: a sound file, or a video with a sound track.
        seconds: decode only this much from the start (None: all of it).
        rate: samples per second.

    Raises:
        InputError: missing, not a sound or video container, without a sound track, or not
            decodable.
    """
    path = Path(path)
    _check_path(path)
    limit = ["-t", f"{seconds:.6f}"] if seconds is not None else []
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", *USER_SOUND_INPUT, "-i", str(path), "-map", "0:a:0", "-vn",
               "-ac", "1", "-ar", str(rate), *limit, "-f", "f32le", "pipe:1"]
    result = subprocess.run(command, capture_output=True, check=False)
    errors = result.stderr.decode("utf-8", "replace")
    if result.returncode != 0:
        raise _unreadable(path, errors)
    return np.frombuffer(result.stdout[:len(result.stdout) // 4 * 4], dtype="<f4").astype(np.float32)
