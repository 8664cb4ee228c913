"""Moving a frame: zoom about the centre, rotation, shifts, and edges filled from the image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from generator.animate.keyframes import Motion
from generator.animate.motion import move


def _pattern(size: int = 64) -> torch.Tensor:
    """(1, 3, size, size): smooth ramps plus blocks, different in every channel and corner."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    blocks = ((torch.arange(size)[:, None] // 8 + torch.arange(size)[None, :] // 8) % 2).float()
    return torch.stack([xs, ys, 0.25 + 0.5 * blocks * xs * ys])[None]


def test_the_identity_motion_changes_nothing() -> None:
    pixels = _pattern()
    assert torch.equal(move(pixels, Motion()), pixels)


def test_zoom_2_puts_the_centre_quarter_at_full_size() -> None:
    pixels = _pattern(64)
    zoomed = move(pixels, Motion(zoom=2.0))
    centre = pixels[..., 16:48, 16:48]  # (1, 3, 32, 32): the central quarter of the area
    expected = F.interpolate(centre, scale_factor=2, mode="bilinear", align_corners=False)  # (1, 3, 64, 64)
    # the same bilinear samples; only the outermost ring differs (the crop has no neighbours outside)
    assert (zoomed - expected)[..., 1:-1, 1:-1].abs().max() < 1e-5
    assert (zoomed - pixels).abs().max() > 0.1


def test_angle_90_is_a_quarter_turn_counter_clockwise() -> None:
    pixels = _pattern(64)
    turned = move(pixels, Motion(angle=90.0))
    assert (turned - torch.rot90(pixels, 1, dims=(2, 3))).abs().max() < 1e-4  # rot90 turns counter-clockwise
    assert (turned - torch.rot90(pixels, -1, dims=(2, 3))).abs().max() > 0.3


def test_a_shift_moves_the_picture_right_and_down_in_pixels() -> None:
    pixels = _pattern(64)
    shifted = move(pixels, Motion(translate_x=5.0, translate_y=3.0))
    assert (shifted[..., 3:, 5:] - pixels[..., :-3, :-5]).abs().max() < 1e-5


def test_non_square_rotation_keeps_the_aspect() -> None:
    pixels = _pattern(64)[..., 16:48, :]  # (1, 3, 32, 64)
    turned = move(move(pixels, Motion(angle=180.0)), Motion(angle=180.0))
    assert (turned - pixels).abs().max() < 1e-4  # two half turns are no turn, without shearing
    assert (move(pixels, Motion(angle=180.0)) - pixels.flip(2, 3)).abs().max() < 1e-4


def test_edges_exposed_by_the_motion_are_reflected_never_black() -> None:
    bright = 0.6 + 0.4 * _pattern(64)  # every pixel at least 0.6
    for motion in (Motion(zoom=0.5), Motion(angle=30.0), Motion(translate_x=20.0, translate_y=-20.0)):
        moved = move(bright, motion)
        assert moved.min() >= 0.6 - 1e-5, motion
    # zooming out by 2 shows the image mirrored beside itself: the left edge column reappears outside
    small = move(bright, Motion(zoom=0.5))
    assert (small[..., 16:48, 16] - small[..., 16:48, 15]).abs().max() < 0.05
