"""Edit masks: read from a file (white = change) or from an image's transparency, fitted to an
image's size, feathered, and brought down to a latent grid.

A mask is a (H, W) float32 tensor in [0, 1]: 1 where the image may change, 0 where it is kept.
Every refusal is one sentence (an unreadable file, a mask that is black everywhere, one that
covers everything); a mask of another size than its image is stretched to fit, with a note.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generator.errors import InputError
from generator.io.images import open_image

ALPHA = "alpha"
"""The mask value that takes the mask from the edited image's transparency (transparent = change)."""

EMPTY_BELOW = 0.5 / 255
"""A mask whose every value is below this changes nothing."""


def mask_from_image(image: Image.Image) -> torch.Tensor:
    """(H, W) mask of a mask image: its grey level (white = change), times its alpha where it has
    one (a transparent area of a mask file changes nothing)."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        grey = grey * (np.asarray(image.convert("RGBA"), dtype=np.float32)[..., 3] / 255.0)
    return torch.from_numpy(np.ascontiguousarray(grey))


def mask_from_alpha(image: Image.Image, what: str = "the image") -> torch.Tensor:
    """(H, W) mask of an image's transparency: fully transparent = 1 (change), opaque = 0.

    Raises:
        InputError: the image has no alpha channel.
    """
    if not (image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)):
        raise InputError(f"{what} has no transparency to take the mask from; erase what should change (save it as "
                         "a PNG with alpha), or give --mask FILE.")
    alpha = np.asarray(image.convert("RGBA"), dtype=np.float32)[..., 3] / 255.0
    return torch.from_numpy(np.ascontiguousarray(1.0 - alpha))


def load_mask(source: str | Path, image: Image.Image, *, what: str = "the mask") -> tuple[torch.Tensor, list[str]]:
    """The mask ``source`` (a file, or :data:`ALPHA` for ``image``'s transparency) at ``image``'s
    size, and notes for the user (a mask file of another size is stretched to fit).

    Raises:
        InputError: the file cannot be read; alpha from an image that has none.
    """
    notes: list[str] = []
    if str(source) == ALPHA:
        return mask_from_alpha(image), notes
    values = mask_from_image(open_image(source, what="mask"))
    height, width = values.shape
    if (width, height) != image.size:
        notes.append(f"{what} {Path(source).name} is {width}x{height} and the image {image.size[0]}x{image.size[1]}; "
                     "the mask was stretched to fit.")
        values = resize_mask(values, image.size)
    return values, notes


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``mask`` (H, W) stretched to ``size`` (width, height), bilinearly (no ringing: a value far
    from an edge stays exactly what it was)."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    return F.interpolate(mask[None, None].float(), size=(size[1], size[0]), mode="bilinear",
                         align_corners=False, antialias=True)[0, 0].clamp(0, 1)


def cover_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``mask`` (H, W) resized and centre-cropped to ``size`` exactly as
    :func:`generator.io.images.cover` does to its image (so the two stay aligned)."""
    height, width = mask.shape
    if (width, height) == tuple(size):
        return mask
    scale = max(size[0] / width, size[1] / height)
    crop_w, crop_h = size[0] / scale, size[1] / scale
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    picture = Image.fromarray(mask.numpy().astype(np.float32), mode="F")
    fitted = picture.resize(size, Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
    return torch.from_numpy(np.asarray(fitted, dtype=np.float32).copy()).clamp(0, 1)


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """``mask`` (H, W) blurred by a Gaussian of standard deviation ``radius`` pixels (edges
    replicated), so a hard edge becomes a ramp that rises monotonically across it; 0: unchanged."""
    if radius <= 0:
        return mask
    half = max(1, math.ceil(3 * radius))
    offsets = torch.arange(-half, half + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / radius) ** 2)
    kernel = kernel / kernel.sum()
    values = mask[None, None].float()
    values = F.conv2d(F.pad(values, (half, half, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    values = F.conv2d(F.pad(values, (0, 0, half, half), mode="replicate"), kernel.view(1, 1, -1, 1))
    return values[0, 0].clamp(0, 1)


def feather_outward(kept: torch.Tensor, radius: float) -> torch.Tensor:
    """The mask (H, W) of everything outside ``kept`` (H, W, 1 = kept), feathered outward only:
    0 on the kept pixels and at their edge, rising to 1 about ``radius`` pixels out (0: a hard
    edge). What an outpaint changes: the new pixels, never the kept ones."""
    outside = 1 - kept
    if radius <= 0:
        return outside
    return ((1 - feather(kept, radius)) * 2 - 1).clamp(0, 1) * outside


def check_mask(mask: torch.Tensor, shown: str = "the mask") -> None:
    """Refuse a mask that changes nothing or keeps nothing.

    Raises:
        InputError: black everywhere, or white everywhere.
    """
    if float(mask.max()) < EMPTY_BELOW:
        raise InputError(f"{shown} is black everywhere, so nothing would change; paint white where the image should "
                         "change.")
    if float(mask.min()) > 1 - EMPTY_BELOW:
        raise InputError(f"{shown} is white everywhere, so nothing of the image would be kept; leave black what "
                         "should stay, or run without a mask to repaint the whole image.")


def grid_mask(mask: torch.Tensor, factor: int, dilate: int = 1) -> torch.Tensor:
    """The latent cells an image mask (H, W) touches: (H/factor, W/factor) bool, True for each cell
    whose ``factor`` x ``factor`` block has any value above zero, grown by ``dilate`` cells (where
    a decoder's first convolutions carry a cell into its neighbours' pixels)."""
    cells = F.max_pool2d(mask[None, None].float(), factor)  # (1, 1, h, w)
    if dilate:
        cells = F.max_pool2d(cells, 2 * dilate + 1, stride=1, padding=dilate)
    return cells[0, 0] > EMPTY_BELOW
