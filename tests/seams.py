"""How visible the wrap seam of a seamless (tileable) image is, for the seamless tests."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image


def seam_statistic(image: Image.Image | np.ndarray, axes: Iterable[str]) -> tuple[float, float]:
    """(seam, interior): how much the image changes across its wrap seam, and between neighbours inside it.

    ``seam`` is the mean absolute difference between the pixels on either side of the wrap seam
    (the last column against the first for ``x``, the last row against the first for ``y``);
    ``interior`` is the same mean over every pair of neighbouring columns (rows) inside the image.
    With ``xy`` both axes' differences are pooled. A seamless image has ``seam`` about as small as
    ``interior``; a copy that tiles with a visible seam has it larger.

    Args:
        image: a PIL image (any mode, compared as RGB in [0, 1]) or an (H, W) or (H, W, C) array,
            compared in its own units.
        axes: ``"x"``, ``"y"`` or ``"xy"`` (or any iterable of those letters): the axes along
            which the image wraps around.

    Raises:
        ValueError: no axis, an axis other than x or y, or an image under 2 pixels along one.
    """
    wanted = set(axes)
    if not wanted or not wanted <= {"x", "y"}:
        raise ValueError(f"axes must be x, y or xy, not {''.join(sorted(wanted))!r}.")
    if isinstance(image, Image.Image):
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 255  # (H, W, 3)
    else:
        pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels  # (H, W, C)
    if pixels.ndim != 3 or min(pixels.shape[:2]) < 2:
        raise ValueError(f"seam_statistic needs an (H, W[, C]) image of at least 2x2 pixels, not {pixels.shape}.")
    seams, interiors = [], []
    for axis in sorted(wanted):
        along = 1 if axis == "x" else 0  # columns change along axis 1, rows along axis 0
        moved = np.moveaxis(pixels, along, 0)  # (N, M, C): N columns (rows) to compare in order
        seams.append(np.abs(moved[-1] - moved[0]).ravel())
        interiors.append(np.abs(moved[1:] - moved[:-1]).ravel())
    return float(np.concatenate(seams).mean()), float(np.concatenate(interiors).mean())
