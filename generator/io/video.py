"""Videos from frames: H.264 mp4 through imageio-ffmpeg's bundled ffmpeg, GIF through Pillow
(reading a user's video is :mod:`generator.io.video_input`).

Frames are never rescaled to suit the codec: an mp4 frame whose sides are not multiples of
16 is padded at its right and bottom edges (edge pixels replicated), so the picture keeps
its pixels and coordinates. Frames of another size than the first are resized to it (and
logged). Files are written to a temporary name and published without ever overwriting,
through ``generator.io.atomic_files.atomic_path``.
"""

from __future__ import annotations

import errno
import logging
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import imageio.v2 as imageio_v2
import numpy as np
from PIL import Image

from generator.errors import GeneratorError, InputError, OutputError
from generator.io.atomic_files import atomic_path, output_error
from generator.io.ffmpeg import USER_SOUND_INPUT, run_ffmpeg
from generator.io.video_input import count_frames

logger = logging.getLogger(__name__)

Frame = Path | Image.Image
"""A frame: a PIL image or the path of an image file."""

MP4_CODEC = "libx264"
MP4_CRF = 18  # visually near-lossless H.264
MP4_PRESET = "medium"
MACRO_BLOCK = 16  # mp4 frames are padded to multiples of this (and ffmpeg is told the same)


def write_mp4(frames: Sequence[Frame], path: Path, *, fps: float = 10) -> Path:
    """Encode ``frames`` into a new H.264 mp4 (yuv420p, crf 18) at ``path``.

    Uses the ffmpeg bundled with imageio-ffmpeg. The finished file is checked to hold every
    frame before it is published. One frame gives a valid one-frame video.

    Args:
        frames: Images or image paths, in order; at least one.
        path: The destination; it must not exist.
        fps: Frames per second.

    Returns:
        ``path``.

    Raises:
        InputError: If there are no frames, ``fps`` is not positive or a frame cannot be read.
        OutputError: If ffmpeg fails or the file cannot be written; files already written in
            ``path``'s folder (the frames included) are kept.
    """
    path = Path(path)
    _check_request(frames, path, fps)
    with atomic_path(path) as tmp:
        count = _encode_mp4(frames, tmp, path, fps)
        _verify_mp4(tmp, path, count)
    logger.debug("wrote %s (%d frames at %s fps)", path, count, fps)
    return path


def write_gif(frames: Sequence[Frame], path: Path, *, fps: float = 10) -> Path:
    """Save ``frames`` as a new animated GIF at ``path`` (loops forever, optimised palette).

    Args:
        frames: Images or image paths, in order; at least one.
        path: The destination; it must not exist.
        fps: Frames per second (GIF stores delays in hundredths of a second).

    Returns:
        ``path``.

    Raises:
        InputError: If there are no frames, ``fps`` is not positive or a frame cannot be read.
        OutputError: If the file cannot be written.
    """
    path = Path(path)
    _check_request(frames, path, fps)
    images = list(_rgb_frames(frames))
    with atomic_path(path) as tmp:
        try:
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=max(20, round(1000 / fps)), loop=0, optimize=True)
        except (ValueError, RuntimeError) as error:
            raise _encoder_error(error, path, "Pillow") from error
    logger.debug("wrote %s (%d frames at %s fps)", path, len(images), fps)
    return path


def pad_to_multiple(image: Image.Image, multiple: int = MACRO_BLOCK) -> np.ndarray:
    """An RGB image as an ``(H, W, 3)`` uint8 array padded to multiples of ``multiple``.

    The padding is added at the right and bottom, replicating the edge pixels; the image
    itself is not rescaled or moved.
    """
    array = np.asarray(image.convert("RGB"))  # (h, w, 3)
    height, width = array.shape[:2]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        array = np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")  # (H, W, 3)
    return array


def _check_request(frames: Sequence[Frame], path: Path, fps: float) -> None:
    if not frames:
        raise InputError(f"there are no frames to encode into {path.name}; save frames "
                         "during the run to get a video.")
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not fps > 0:
        raise InputError(f"the frame rate must be a positive number, not {fps!r}; use for "
                         "example 10.")


def _open_writer(tmp: Path, fps: float) -> Any:
    """Start an ffmpeg mp4 writer for ``tmp`` (a seam for tests that make ffmpeg fail)."""
    return imageio_v2.get_writer(
        tmp, format="FFMPEG", mode="I", fps=fps, codec=MP4_CODEC, pixelformat="yuv420p",
        quality=None,  # let crf below set the quality
        macro_block_size=MACRO_BLOCK, ffmpeg_log_level="error",
        output_params=["-crf", str(MP4_CRF), "-preset", MP4_PRESET,
                       "-movflags", "+faststart", "-f", "mp4"],
    )


def _encode_mp4(frames: Sequence[Frame], tmp: Path, path: Path, fps: float) -> int:
    """Feed every frame to ffmpeg; returns the number of frames written."""
    count = 0
    try:
        writer = _open_writer(tmp, fps)
        try:
            for array in map(pad_to_multiple, _rgb_frames(frames)):
                writer.append_data(array)
                count += 1
        finally:
            writer.close()
    except GeneratorError:
        raise
    except ImportError as error:
        raise OutputError(f"cannot encode {path.name} because imageio-ffmpeg is missing; "
                          f"install it with pip install imageio-ffmpeg (the files already "
                          f"written in {path.parent} are kept).") from error
    except (OSError, RuntimeError, ValueError) as error:
        raise _encoder_error(error, path, "ffmpeg") from error
    return count


def _verify_mp4(tmp: Path, path: Path, expected: int) -> None:
    """Check that ffmpeg finished the file: imageio does not report ffmpeg's exit status."""
    try:
        if os.path.getsize(tmp) == 0:
            raise RuntimeError("ffmpeg wrote nothing")
    except (OSError, RuntimeError) as error:
        raise _encoder_error(error, path, "ffmpeg") from error
    found = _count(tmp, path)
    if found != expected:
        raise _encoder_error(RuntimeError(f"the video holds {found} of {expected} frames"),
                             path, "ffmpeg")


def _encoder_error(error: Exception, path: Path, encoder: str) -> OutputError:
    text = str(error)
    if "No space left on device" in text or getattr(error, "errno", None) == errno.ENOSPC:
        return output_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0][:200] if lines else type(error).__name__
    return OutputError(f"{encoder} could not encode {path.name} ({reason}); the files already "
                       f"written in {path.parent}, frames included, are kept, so you can "
                       "encode them with another tool.")


def _rgb_frames(frames: Iterable[Frame]) -> Iterable[Image.Image]:
    """Each frame as an RGB image of the first frame's size, loaded one at a time."""
    size: tuple[int, int] | None = None
    for index, frame in enumerate(frames):
        image = _to_rgb(_load(frame))
        if size is None:
            size = image.size
        elif image.size != size:
            logger.warning("frame %d is %dx%d, not %dx%d like the first; resized to match",
                           index, *image.size, *size)
            image = image.resize(size, Image.Resampling.LANCZOS)
        yield image


def _load(frame: Frame) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame
    try:
        with Image.open(frame) as image:
            image.load()
            return image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"the frame {frame} cannot be read as an image ({error}); check "
                         "that the file is intact or remove it.") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: keep the top 8 bits
        scaled = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
    return image if image.mode == "RGB" else image.convert("RGB")


# --- interpolation and sound (the animation's smooth output and restyle) ---


def interpolate_mp4(source: Path, path: Path, *, factor: int, fps: float) -> Path:
    """A new mp4 at ``path`` with ``factor`` times the frames of ``source`` (at ``fps``):
    ffmpeg's motion-compensated ``minterpolate`` puts ``factor - 1`` frames after every frame,
    the last held, so ``n`` frames become exactly ``n * factor`` at ``fps * factor``.

    Raises:
        OutputError: ffmpeg failed; ``source`` is kept.
    """
    path = Path(path)
    frames = _count(source, path)
    target = frames * factor
    with atomic_path(path) as tmp:
        result = run_ffmpeg(["-i", str(source), "-vf",
                             f"tpad=stop_mode=clone:stop={factor},minterpolate=fps={fps * factor:g}:mi_mode=mci",
                             "-frames:v", str(target), "-an", "-c:v", MP4_CODEC, "-crf", str(MP4_CRF),
                             "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", "-y", str(tmp)])
        if result.returncode != 0:
            raise _encoder_error(RuntimeError(result.stderr.strip().splitlines()[-1:] or "ffmpeg failed"), path,
                                 "ffmpeg")
        _verify_mp4(tmp, path, target)
    logger.debug("wrote %s (%d frames interpolated from %d)", path, target, frames)
    return path


def add_audio(video_path: Path, audio_source: Path, path: Path) -> Path:
    """A new mp4 at ``path``: the picture of ``video_path`` (not re-encoded) with the sound of
    ``audio_source`` (a video or a sound file, :data:`~generator.io.ffmpeg.USER_SOUND_INPUT`),
    cut to the picture's length (shorter sound is followed by silence: every frame is kept).

    Raises:
        OutputError: ffmpeg failed; ``video_path`` is kept.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        result = run_ffmpeg(["-i", str(video_path), *USER_SOUND_INPUT, "-i", str(audio_source), "-map", "0:v:0",
                             "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-af", "apad", "-shortest",
                             "-movflags", "+faststart", "-f", "mp4", "-y", str(tmp)])
        if result.returncode != 0:
            raise _encoder_error(RuntimeError(result.stderr.strip().splitlines()[-1:] or "ffmpeg failed"), path,
                                 "ffmpeg")
    return path


def _count(video: Path, path: Path) -> int:
    """The frames of ``video``, a file this module wrote for ``path``.

    Raises:
        OutputError: ffmpeg cannot decode it.
    """
    try:
        return count_frames(video)
    except InputError as error:
        raise _encoder_error(error, path, "ffmpeg") from error


