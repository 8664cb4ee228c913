"""Reading a video a user gave (a restyle's input): its frame rate, size, sound and frame
count, and its frames one at a time, always through the bundled ffmpeg under
:data:`generator.io.ffmpeg.USER_INPUT` (a local file in a video container, never a playlist
or a list of other files); and a folder of frames in natural order."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from generator.errors import InputError, summary
from generator.io.ffmpeg import REFUSED_FORMAT, USER_INPUT, run_ffmpeg
from generator.io.images import IMAGE_SUFFIXES
from generator.io.input_limits import LIMITS, pixel_limit_text, too_many_pixels


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds.

    Attributes:
        fps: frames per second.
        size: (width, height).
        has_audio: whether it has a sound track.
        duration: seconds, as the container states it (None when it does not).
    """

    fps: float
    size: tuple[int, int]
    has_audio: bool
    duration: float | None = None

    @property
    def stated_frames(self) -> int | None:
        """The frame count the container's duration and rate imply (None when unknown)."""
        return None if self.duration is None else int(self.duration * self.fps + 0.5)


def _unreadable(path: Path, ffmpeg_output: str) -> InputError:
    """The one sentence for a video ffmpeg could not open or decode."""
    if REFUSED_FORMAT in ffmpeg_output:
        return InputError(f"{path} is not a video file this tool reads (MP4, MOV, MKV, WebM, AVI, GIF, MPEG-TS, FLV, "
                          "MPEG, Ogg, WMV); playlists and lists of other files are refused. Give a video file or a "
                          "folder of frames.")
    lines = [line.strip() for line in ffmpeg_output.splitlines() if line.strip()]
    reason = lines[-1][:200] if lines else "no video stream"
    return InputError(f"{path} cannot be read as a video ({reason}); give an intact video file or a folder of frames.")


def probe_video(path: Path) -> VideoInfo:
    """Frame rate, size, duration and whether there is sound, from the container's header; the
    frame size and the stated length are checked against this process's limits
    (:mod:`generator.io.input_limits`) before any frame is decoded.

    Raises:
        InputError: the file is missing, not in a video container, holds no readable video
            stream, or is larger or longer than the limits.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"the video {path} does not exist; check its path.")
    result = run_ffmpeg([*USER_INPUT, "-i", str(path)])  # ffmpeg describes the input, then wants an output
    stream = re.search(r"Stream #\S+.*?: Video: .*?, (\d+)x(\d+)[ ,].*?(?:([\d.]+) fps|([\d.]+) tbr)", result.stderr)
    if stream is None:
        raise _unreadable(path, result.stderr)
    fps = float(stream[3] or stream[4])
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", result.stderr)
    seconds = int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]) if duration else None
    info = VideoInfo(fps, (int(stream[1]), int(stream[2])), bool(re.search(r"Stream #\S+.*?: Audio:", result.stderr)),
                     seconds)
    width, height = info.size
    if too_many_pixels(width, height):
        raise InputError(f"the video {path.name} has {width}x{height} frames, larger than {LIMITS.scope} accepts "
                         f"({pixel_limit_text()}); resize it first.")
    _check_length(path, info.stated_frames)
    return info


def _check_length(path: Path, frames: int | None, *, counted: bool = False) -> None:
    if LIMITS.max_frames is not None and frames is not None and frames > LIMITS.max_frames:
        amount = f"more than {LIMITS.max_frames}" if counted else f"about {frames}"
        raise InputError(f"the video {path.name} has {amount} frames, more than {LIMITS.scope} restyles "
                         f"({LIMITS.max_frames}); cut it shorter first.")


def count_frames(path: Path) -> int:
    """The number of frames of a video file (decodes it once; with a frame limit, decoding stops
    just past it, so a video that lies about its length costs no more than the limit).

    Raises:
        InputError: the file cannot be decoded, or has more frames than the limit.
    """
    stop = [] if LIMITS.max_frames is None else ["-frames:v", str(LIMITS.max_frames + 1)]
    result = run_ffmpeg([*USER_INPUT, "-i", str(path), "-map", "0:v:0", *stop, "-vf", "null", "-f", "null", "-"])
    counts = re.findall(r"frame=\s*(\d+)", result.stderr)
    if result.returncode != 0 or not counts:
        raise _unreadable(Path(path), result.stderr)
    _check_length(Path(path), int(counts[-1]), counted=True)
    return int(counts[-1])


def read_video_frames(path: Path) -> Iterator[Image.Image]:
    """The frames of a video file, one RGB image at a time.

    Raises:
        InputError: the file cannot be decoded.
    """
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path), input_params=USER_INPUT)
        meta = next(reader)
        width, height = meta["size"]
        for raw in reader:
            yield Image.frombytes("RGB", (width, height), raw)
    except (OSError, RuntimeError, StopIteration, KeyError) as error:
        if REFUSED_FORMAT in str(error):
            raise _unreadable(Path(path), str(error)) from error
        raise InputError(f"{path} cannot be decoded as a video ({summary(error)}); give an intact video file or "
                         "a folder of frames.") from error


def frame_files(folder: Path) -> list[Path]:
    """The image files of a folder of frames, in natural order (``2.png`` before ``10.png``)."""
    def natural(path: Path) -> list:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]

    return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                  key=natural)
