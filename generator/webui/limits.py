"""Server-set limits of the web UI: the largest image an upscale may produce, and the defaults
of the largest image and video a visitor may give (see :mod:`generator.io.input_limits`)."""

from __future__ import annotations

from generator.errors import InputError

DEFAULT_MAX_MEGAPIXELS = 64.0
"""The default cap on an upscale's output (``--max-upscale-megapixels``)."""
DEFAULT_MAX_IMAGE_MEGAPIXELS = 24.0
"""The default cap on an image (or video frame) a visitor gives (``--max-image-megapixels``)."""
DEFAULT_MAX_VIDEO_FRAMES = 3000
"""The default cap on the frames of a video a visitor restyles (``--max-video-frames``)."""


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


def _megapixels(pixels: int) -> str:
    """``108`` for 108 million pixels, ``0.2`` for 187,500."""
    value = pixels / 1e6
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
