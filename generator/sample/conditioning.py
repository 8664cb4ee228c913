"""Condition tokens for each kind of prior.

* ``sos``: one start token per sample (unconditional models).
* ``class``: the class id as the single condition token (ImageNet cIN).
* ``coord``: FacesHQ's ``CoordStage``: the row-major pixel index of the *whole* target
  image, divided by its pixel count, averaged over each latent cell, times the number of
  levels, rounded. Each window therefore knows where it sits in a large image.
* ``segmentation`` / ``depth``: a map file encoded by the prior's own condition VQGAN.
  Segmentation maps hold class ids (PNG mode L or P) and become one-hot channels in {0, 1};
  depth maps (greyscale, 16-bit, or taming's RGBA-packed float32) are scaled to [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generator.errors import InputError
from generator.io.images import open_image
from generator.sample.loader import Prior


def start_tokens(prior: Prior, batch: int, class_label: int | None, *, flag: str = "--class") -> torch.Tensor:
    """(B, 1) start or class token. ``flag`` is the option that sets the class in the command
    in use (``--class`` for sampling, ``--prior-class`` for text to image), for messages.

    Raises:
        InputError: a class-conditional model without a class (or one out of range), or a
            class for a model that is not class-conditional.
    """
    spec = prior.spec
    if spec.conditioning != "class" and class_label is not None:
        raise InputError(f"this model is not class-conditional (it is conditioned on "
                         f"{'nothing' if spec.conditioning == 'sos' else spec.conditioning}); leave {flag} out.")
    if spec.conditioning == "class":
        if class_label is None:
            raise InputError(f"this model is class-conditional; give {flag} N with N from 0 to {spec.n_classes - 1}.")
        if not 0 <= class_label < min(spec.n_classes, spec.gpt.vocab_size):
            raise InputError(
                f"class {class_label} is out of range; "
                f"this model has {spec.n_classes} classes (0 to {spec.n_classes - 1})."
            )
        token = class_label
    else:
        token = spec.sos_token
    return torch.full((batch, 1), token, dtype=torch.long, device=prior.device)


def coordinate_tokens(prior: Prior, grid: tuple[int, int], batch: int) -> torch.Tensor:
    """(B, H, W) coordinate tokens for a grid of latent cells."""
    spec = prior.spec
    factor = spec.coord_down_factor
    height, width = grid[0] * factor, grid[1] * factor
    coord = torch.arange(height * width, dtype=torch.float64).view(1, 1, height, width) / (height * width)
    cells = F.avg_pool2d(coord, factor).clamp(0, 1)  # (1, 1, H, W)
    tokens = (cells * spec.coord_levels).round().long()[:, 0]
    return tokens.expand(batch, -1, -1).to(prior.device)


def map_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a condition map file."""
    return open_image(path, what="condition map").size


def _segmentation(image: Image.Image, size: tuple[int, int], n_labels: int, path: Path) -> torch.Tensor:
    if image.mode not in ("L", "P", "I", "I;16"):
        raise InputError(
            f"segmentation map {path} is a {image.mode} image; "
            "give a label map (one class id per pixel, PNG mode L or P)."
        )
    labels = np.asarray(image.resize(size, Image.Resampling.NEAREST), dtype=np.int64)
    if labels.max() >= n_labels:
        raise InputError(
            f"segmentation map {path} holds class {labels.max()}, "
            f"but this model knows {n_labels} classes (0 to {n_labels - 1})."
        )
    onehot = F.one_hot(torch.from_numpy(labels), n_labels).permute(2, 0, 1).float()  # (n_labels, H, W)
    return onehot[None]


def _depth(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    if image.mode == "RGBA":  # taming's format: float32 depth packed into the four bytes
        values = np.ascontiguousarray(np.asarray(image, dtype=np.uint8)).view(np.float32)[..., 0]
    else:
        values = np.asarray(image.convert("F") if image.mode not in ("F", "I", "I;16") else image, dtype=np.float32)
    resized = np.asarray(Image.fromarray(values.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
    low, high = float(resized.min()), float(resized.max())
    scaled = (resized - low) / max(high - low, 1e-8) * 2 - 1
    return torch.from_numpy(scaled)[None, None]  # (1, 1, H, W)


def map_tokens(prior: Prior, path: str | Path, size: tuple[int, int], grid: tuple[int, int],
               batch: int) -> torch.Tensor:
    """(B, H, W) tokens of a segmentation or depth map resized to ``size`` (width, height)."""
    path = Path(path)
    assert prior.cond_vqgan is not None
    image = open_image(path, what="condition map")
    if prior.spec.conditioning == "segmentation":
        pixels = _segmentation(image, size, prior.cond_vqgan.image_channels, path)
    else:
        pixels = _depth(image, size)
    with torch.inference_mode():
        tokens = prior.cond_vqgan.encode_to_indices(pixels.to(prior.device))  # (1, H, W)
    if tuple(tokens.shape[1:]) != grid:
        raise InputError(
            f"condition map {path} encodes to a {tokens.shape[1]}x{tokens.shape[2]} grid but the image needs "
            f"{grid[0]}x{grid[1]}; the condition VQGAN does not match the image VQGAN's factor."
        )
    return tokens.expand(batch, -1, -1)
