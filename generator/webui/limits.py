"""Server-set limits of the web UI: the largest image an upscale may produce, and the defaults
of the largest image and video a visitor may give (see :mod:`generator.io.input_limits`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from generator.errors import InputError

DEFAULT_MAX_MEGAPIXELS = 64.0
"""The default cap on an upscale's output (``--max-upscale-megapixels``)."""
DEFAULT_MAX_IMAGE_MEGAPIXELS = 24.0
"""The default cap on an image (or video frame) a visitor gives (``--max-image-megapixels``)."""
DEFAULT_MAX_VIDEO_FRAMES = 3000
"""The default cap on the frames of a video a visitor restyles (``--max-video-frames``)."""
DEFAULT_MAX_JOB_MEGAPIXELS = 16.0
"""The default cap on the image an API job makes, upscaling included (``--max-job-megapixels``)."""


def upscaled_size(input_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(width, height) of ``input_size`` scaled by ``scale``, rounded as the upscaler rounds."""
    width, height = input_size
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_upscale_size(input_size: tuple[int, int], scale: float, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
                       network_scale: int | None = None) -> tuple[int, int]:
    """Refuse an upscale whose output would exceed this server's limit.

    Args:
        input_size: the input image's (width, height).
        scale: the requested output factor (``--scale``).
        max_megapixels: the server's cap (a non-positive value: no cap).
        network_scale: the model's own factor when known; the model first makes an image of
            that factor (resized to ``scale`` afterwards), which is checked too.

    Returns:
        The output's (width, height).

    Raises:
        InputError: e.g. "the upscaled image would be 12000x9000 (108 megapixels), over this
            server's limit of 64; upscale a smaller image or choose a lower scale".
    """
    width, height = output = upscaled_size(input_size, scale)
    if max_megapixels <= 0:
        return output
    limit = f"{max_megapixels:g}"
    if width * height > max_megapixels * 1e6:
        raise InputError(f"the upscaled image would be {width}x{height} ({_megapixels(width * height)} megapixels), "
                         f"over this server's limit of {limit}; upscale a smaller image or choose a lower scale.")
    if network_scale is not None and network_scale > scale:
        inner_width, inner_height = upscaled_size(input_size, network_scale)
        if inner_width * inner_height > max_megapixels * 1e6:
            raise InputError(
                f"this upscaler makes a {inner_width}x{inner_height} image first ({network_scale}x, "
                f"{_megapixels(inner_width * inner_height)} megapixels), over this server's limit of {limit}; upscale "
                "a smaller image or choose a model with a lower factor.")
    return output


def check_job_size(plain: Mapping[str, Any], max_megapixels: float = DEFAULT_MAX_JOB_MEGAPIXELS) -> None:
    """Refuse a job whose image (its ``size`` setting, times its ``upscale`` factor) would exceed
    this server's limit; a job without a size (or a non-positive limit) passes.

    Args:
        plain: the job's plain (nested) config.
        max_megapixels: the server's cap per job.

    Raises:
        InputError: e.g. "this job would make a 4096x4096 image (17 megapixels), over this
            server's limit of 16 per job; choose a smaller size or a lower upscale factor".
    """
    flat = _leaves(plain)
    size = flat.get("size")
    if max_megapixels <= 0 or not isinstance(size, (list, tuple)) or len(size) != 2:
        return
    scale = float(flat.get("upscale") or 1.0) if isinstance(flat.get("upscale"), (int, float)) else 1.0
    width, height = upscaled_size((int(size[0]), int(size[1])), max(scale, 1.0))
    if width * height > max_megapixels * 1e6:
        raise InputError(f"this job would make a {width}x{height} image ({_megapixels(width * height)} megapixels), "
                         f"over this server's limit of {max_megapixels:g} per job; choose a smaller size or a lower "
                         "upscale factor.")


def _leaves(plain: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in plain.items():
        if isinstance(value, Mapping):
            found.update(_leaves(value))
        else:
            found.setdefault(name, value)
    return found


def _megapixels(pixels: int) -> str:
    """``108`` for 108 million pixels, ``0.2`` for 187,500."""
    value = pixels / 1e6
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
