"""How large a user's image or video this process decodes: checked from the file's header,
before any pixel is decoded, so a small file that declares a huge picture (a decompression
bomb) costs nothing.

The command line takes images up to 16384x16384 and videos of any length; a server lowers
both for its visitors (``app.py --max-image-megapixels --max-video-frames``) with
:func:`set_input_limits`. The limits are process-wide, like Pillow's own ``MAX_IMAGE_PIXELS``.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PIXELS = 16384 * 16384
"""The most pixels an image may have anywhere (the command line's limit)."""


@dataclass
class InputLimits:
    """The current limits.

    Attributes:
        max_pixels: pixels of one image or video frame.
        max_frames: frames of one video (None: any number).
        scope: who set them, for messages ("this tool", "this server").
    """

    max_pixels: int = MAX_PIXELS
    max_frames: int | None = None
    scope: str = "this tool"


LIMITS = InputLimits()


def set_input_limits(max_megapixels: float | None = None, max_frames: int | None = None, *,
                     scope: str = "this server") -> InputLimits:
    """Lower the limits of this process (never above :data:`MAX_PIXELS`); returns them.

    Args:
        max_megapixels: the largest image or video frame, in millions of pixels (None: unchanged).
        max_frames: the longest video, in frames (None: unchanged).
        scope: who sets them, named in refusals.
    """
    if max_megapixels is not None:
        LIMITS.max_pixels = min(MAX_PIXELS, max(1, int(max_megapixels * 1e6)))
    if max_frames is not None:
        LIMITS.max_frames = max(1, int(max_frames))
    LIMITS.scope = scope
    return LIMITS


def too_many_pixels(width: int, height: int) -> bool:
    """Whether an image of ``width`` x ``height`` is over the limit."""
    return width * height > LIMITS.max_pixels


def pixel_limit_text() -> str:
    """``"268 megapixels"``-like wording of the pixel limit, for messages."""
    megapixels = LIMITS.max_pixels / 1e6
    return f"{megapixels:.0f} megapixels" if megapixels >= 10 else f"{megapixels:.1f} megapixels"
