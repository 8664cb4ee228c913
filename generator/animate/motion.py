"""Moving a frame: zoom, rotate and shift an image about its centre.

One affine resampling (bilinear, ``grid_sample``) per frame, so repeated motion blurs no
more than one interpolation per frame. Pixels that the motion brings in from outside the
picture (zooming out, rotating, shifting) are filled by reflecting the image at its edges,
never black, so the next optimisation does not have to paint over a border.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from generator.animate.keyframes import Motion


def motion_matrix(motion: Motion, width: int, height: int) -> torch.Tensor:
    """The (1, 2, 3) ``affine_grid`` matrix that maps output to input coordinates, in the
    normalised units of ``grid_sample`` (``align_corners=False``).

    The content is scaled by ``zoom``, turned ``angle`` degrees counter-clockwise (as seen;
    image y points down) and shifted ``translate_x`` pixels right and ``translate_y`` down.
    Rotation is done in pixels, so non-square images are not sheared.
    """
    angle = math.radians(motion.angle)
    cos, sin = math.cos(angle), math.sin(angle)
    # forward, in pixels about the centre: p_out = zoom * R p_in + t, with R counter-clockwise as seen
    # inverse: p_in = R^-1 (p_out - t) / zoom; R^-1 = [[cos, -sin], [sin, cos]] in y-down coordinates
    inverse = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64) / motion.zoom  # (2, 2)
    half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    shift = torch.tensor([motion.translate_x, motion.translate_y], dtype=torch.float64)
    linear = inverse * half[None, :] / half[:, None]  # D^-1 A D, D = diag(half): normalised -> pixels
    offset = -(inverse @ shift) / half  # (2,)
    return torch.cat([linear, offset[:, None]], dim=1)[None].float()  # (1, 2, 3)


def revealed(motion: Motion, width: int, height: int) -> torch.Tensor:
    """(H, W) mask of the pixels ``motion`` brings in from outside the frame: 1 where a pixel's
    source lies outside the moved image (less than half a pixel in counts as inside), else 0."""
    if motion.is_identity:
        return torch.zeros(height, width)
    theta = motion_matrix(motion, width, height)
    grid = F.affine_grid(theta, [1, 3, height, width], align_corners=False)[0]  # (H, W, 2), x then y in [-1, 1]
    limits = torch.tensor([1 + 1 / width, 1 + 1 / height])
    return (grid.abs() > limits).any(dim=-1).float()


def move(pixels: torch.Tensor, motion: Motion) -> torch.Tensor:
    """``pixels`` (B, 3, H, W) moved by ``motion``, edges filled by reflection; same shape.

    The identity motion returns ``pixels`` unchanged (no resampling at all).
    """
    if motion.is_identity:
        return pixels
    batch, _, height, width = pixels.shape
    theta = motion_matrix(motion, width, height).to(pixels.device).expand(batch, 2, 3)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)  # (B, H, W, 2)
    moved = F.grid_sample(pixels.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return moved.clamp(0, 1).to(pixels.dtype)  # (B, 3, H, W)
