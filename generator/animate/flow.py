"""Optical flow between the input frames of a restyle: computing it, warping by it, finding
occlusions, and the temporal warping error (how much a video flickers).

Conventions. A flow is an (H, W, 2) float32 array of (dx, dy) pixel displacements. The flow
*from* frame A *to* frame B gives, for every pixel p of A, where its content is in B:
``A(p) ≈ B(p + flow(p))``. Restyling frame k uses the *backward* flow, from input frame k to
input frame k-1: sampling the previous output at ``p + backward(p)`` moves it onto frame k
(:func:`warp`). A pixel is *consistent* when following the backward flow and then the forward
flow (k-1 to k) comes back to where it started (the forward-backward check of Sundaram, Brox
and Keutzer, 2010); pixels that were hidden in frame k-1 (disoccluded) fail it, and follow the
new input frame instead of the warped previous output.

The temporal warping error (Lai et al., 2018, the standard measure of video style transfer) is
the mean absolute difference, over consistent pixels and colour channels, between each output
frame and the previous output warped by the input's backward flow; pixels in [0, 1].

Flows come from OpenCV (``opencv-python-headless``): DIS (fast, the default) or Farneback; or
from RAFT (:mod:`generator.animate.raft`, a network: sharper, best on a GPU), given as ``raft``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FLOW_METHODS = ("dis", "farneback", "raft")
"""The flow methods (``--flow``); ``off`` turns flow off."""
OFF = "off"
FlowNetwork = Callable[[Image.Image | np.ndarray, Image.Image | np.ndarray], np.ndarray]
"""A network that gives the (H, W, 2) flow from one frame to another (RAFT)."""
STILL_BELOW = 0.05
"""Mean flow magnitude (pixels) under which a pair of frames counts as not moving."""


@dataclass(frozen=True)
class FramePairFlow:
    """What restyling one frame needs of the flow from its input frame to the previous one.

    Attributes:
        backward: (H, W, 2) float32, from input frame k to input frame k-1.
        consistent: (H, W) float32, 1 where the forward-backward check holds, else 0.
    """

    backward: np.ndarray
    consistent: np.ndarray

    @property
    def motion(self) -> float:
        """The mean displacement in pixels."""
        return float(np.linalg.norm(self.backward, axis=-1).mean())


def _grey(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W) uint8 luminance of an RGB image."""
    import cv2

    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2GRAY)


def optical_flow(source: Image.Image | np.ndarray, target: Image.Image | np.ndarray, method: str = "dis",
                 network: FlowNetwork | None = None) -> np.ndarray:
    """(H, W, 2) float32: the flow from ``source`` to ``target`` (RGB, the same size): for each
    pixel p of ``source``, ``source(p) ≈ target(p + flow(p))``; ``network`` computes it for ``raft``."""
    import cv2

    if method == "raft":
        if network is None:
            raise ValueError("the raft flow method needs its network")
        return np.asarray(network(source, target), dtype=np.float32)
    first, second = _grey(source), _grey(target)
    if first.shape != second.shape:
        raise ValueError(f"flow needs two frames of one size, not {first.shape[::-1]} and {second.shape[::-1]}")
    if method == "dis":
        solver = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = solver.calc(first, second, None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(first, second, None, pyr_scale=0.5, levels=4, winsize=15, iterations=3,
                                            poly_n=5, poly_sigma=1.2, flags=0)
    else:
        raise ValueError(f"flow method must be one of {', '.join(FLOW_METHODS)}, not {method!r}")
    return np.asarray(flow, dtype=np.float32)


def _sample_grid(flow: torch.Tensor) -> torch.Tensor:
    """(1, H, W, 2) grid_sample coordinates (align_corners=True) of ``p + flow(p)``."""
    height, width = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    x = (xs + flow[..., 0]) / max(width - 1, 1) * 2 - 1
    y = (ys + flow[..., 1]) / max(height - 1, 1) * 2 - 1
    return torch.stack([x, y], dim=-1)[None]


def warp(image: torch.Tensor, flow: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``image`` (B, C, H, W) sampled at ``p + flow(p)`` (bilinear, edges held); same shape.
    With the backward flow of frame k, the previous output moved onto frame k."""
    flow_tensor = torch.as_tensor(np.asarray(flow, dtype=np.float32))  # (H, W, 2)
    grid = _sample_grid(flow_tensor).to(image.device).expand(image.shape[0], -1, -1, -1)  # (B, H, W, 2)
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def consistent_pixels(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) float32 for the pixels of frame k: 1 where ``backward`` (k to k-1) and ``forward``
    (k-1 to k) agree, ``|forward(p + backward(p)) + backward(p)|² <= 0.01 (|forward(..)|² +
    |backward(p)|²) + 0.5``, and ``p + backward(p)`` lies inside the frame; 0 elsewhere (occluded)."""
    height, width = backward.shape[:2]
    forward_tensor = torch.as_tensor(np.asarray(forward, dtype=np.float32)).permute(2, 0, 1)[None]  # (1, 2, H, W)
    followed = warp(forward_tensor, backward)[0].permute(1, 2, 0).numpy()  # (H, W, 2): forward at p + backward(p)
    error = np.square(followed + backward).sum(-1)
    scale = np.square(followed).sum(-1) + np.square(backward).sum(-1)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    landing_x, landing_y = xs + backward[..., 0], ys + backward[..., 1]
    inside = (landing_x >= -0.5) & (landing_x <= width - 0.5) & (landing_y >= -0.5) & (landing_y <= height - 0.5)
    return ((error <= 0.01 * scale + 0.5) & inside).astype(np.float32)


def pair_flow(previous: Image.Image, current: Image.Image, method: str = "dis",
              network: FlowNetwork | None = None) -> FramePairFlow:
    """The flow of input frame ``current`` back to ``previous``, and which of its pixels are consistent."""
    backward = optical_flow(current, previous, method, network)
    forward = optical_flow(previous, current, method, network)
    return FramePairFlow(backward, consistent_pixels(forward, backward))


def consistency_target(previous_output: torch.Tensor, pair: FramePairFlow) -> tuple[torch.Tensor, torch.Tensor]:
    """(warped, mask): the previous output (1, 3, H, W) moved onto this frame by the input's flow,
    and (1, 1, H, W) the pixels where it should hold (consistent, not occluded)."""
    warped = warp(previous_output, pair.backward).clamp(0, 1)  # (1, 3, H, W)
    mask = torch.from_numpy(pair.consistent)[None, None].to(warped)  # (1, 1, H, W)
    return warped, mask


def warping_error(current: torch.Tensor, previous: torch.Tensor, pair: FramePairFlow) -> float:
    """The temporal warping error of one output frame: mean ``|current - warp(previous)|`` over
    consistent pixels and channels, images (1, 3, H, W) in [0, 1]; 0 when no pixel is consistent."""
    warped, mask = consistency_target(previous, pair)
    covered = float(mask.sum()) * current.shape[1]
    if covered == 0:
        return 0.0
    return float(((current.float() - warped).abs() * mask).sum()) / covered
