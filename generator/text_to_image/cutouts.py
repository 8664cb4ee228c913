"""Random, augmented cutouts of the decoded image: what CLIP looks at on each step.

Each cutout is a square crop whose side is ``rand ** cut_pow`` of the way from the CLIP input
size to the whole image, at a random position, resampled to the CLIP input size, then passed
through the chosen kornia augmentations and given per-cutout Gaussian noise.

Cropping and resampling are one matrix product per axis (an antialiased triangle filter),
so the operation is differentiable, exact at any scale and deterministic on the GPU, unlike
``interpolate``/``adaptive_avg_pool2d`` whose CUDA backward passes use atomics. Crop geometry
comes from an explicit generator; kornia and the noise use torch's global generators, which
the guidance loop swaps per image (see ``SeedStreams`` in :mod:`generator.text_to_image.loop`).
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Sequence

import kornia.augmentation as K
import torch
from torch import nn

from generator.config import AUGMENTATION_NAMES
from generator.errors import ConfigError

# YIQ colour space: luma Y and two chroma axes, in which a hue shift is a rotation.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


class HueSaturationJitter(nn.Module):
    """Random hue and saturation per image, as one 3x3 colour matrix each: with probability
    ``p`` the chroma is scaled by a factor in [1 - saturation, 1 + saturation] and rotated by
    up to ``hue`` of a full turn (in YIQ), then clamped to [0, 1]. Greys stay grey.

    The effect of kornia's ColorJitter(hue, saturation), for a fraction of its cost: kornia
    converts to HSV with many masked selections (0.44 s of a 0.55 s cutout pass at 32
    cutouts on a CPU); this is one small batched matrix product, deterministic on CUDA.
    Draws come from torch's global generator, like kornia's.
    """

    def __init__(self, hue: float = 0.1, saturation: float = 0.1, p: float = 0.7):
        super().__init__()
        self.hue, self.saturation, self.p = hue, saturation, p

    def matrices(self, count: int, device: torch.device) -> torch.Tensor:
        """(count, 3, 3) random colour matrices (identity where not applied)."""
        draws = torch.rand(count, 3, device=device)  # (N, 3): apply?, hue, saturation
        applied = draws[:, 0] < self.p
        angle = (draws[:, 1] * 2 - 1) * self.hue * 2 * math.pi * applied
        scale = 1 + (draws[:, 2] * 2 - 1) * self.saturation * applied
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        chroma = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=1).view(count, 3, 3)
        to_yiq, to_rgb = _yiq_matrices(device)
        return to_rgb @ chroma @ to_yiq  # (N, 3, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> the same, jittered."""
        matrices = self.matrices(images.shape[0], images.device).to(images.dtype)
        return torch.einsum("nij,njhw->nihw", matrices, images).clamp(0, 1)


# Short name -> factory(cut_size) of an augmentation (kornia's, except the colour jitter).
# Strengths follow the VQGAN+CLIP tools users know (nerdyrodent/VQGAN-CLIP's `-aug` list).
AUGMENTATIONS: dict[str, Callable[[int], nn.Module]] = {
    "affine": lambda size: K.RandomAffine(degrees=15, translate=(0.1, 0.1), shear=5, p=0.7, padding_mode="zeros"),
    "perspective": lambda size: K.RandomPerspective(distortion_scale=0.7, p=0.7),
    "jitter": lambda size: HueSaturationJitter(hue=0.1, saturation=0.1, p=0.7),
    "sharpness": lambda size: K.RandomSharpness(sharpness=0.3, p=0.4),
    "noise": lambda size: K.RandomGaussianNoise(mean=0.0, std=1.0, p=0.5),
    "erasing": lambda size: K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=0.7),
    "flip": lambda size: K.RandomHorizontalFlip(p=0.5),
    "rotation": lambda size: K.RandomRotation(degrees=15, p=0.7),
    "resized-crop": lambda size: K.RandomResizedCrop(size=(size, size), scale=(0.1, 1.0), ratio=(0.75, 1.333), p=0.5),
    "crop": lambda size: K.RandomCrop(size=(size, size), pad_if_needed=True, padding_mode="reflect", p=0.5),
    "elastic": lambda size: K.RandomElasticTransform(p=0.7),
    "thin-plate": lambda size: K.RandomThinPlateSpline(scale=0.8, same_on_batch=True, p=0.7),
    "grayscale": lambda size: K.RandomGrayscale(p=0.1),
}
assert tuple(AUGMENTATIONS) == AUGMENTATION_NAMES, "generator/config.py lists the augmentations front ends show"

# Augmentations that warp with grid_sample or resize with interpolate: their CUDA backward
# passes use atomic additions, so GPU runs with them are not bitwise reproducible.
NONDETERMINISTIC_ON_CUDA = frozenset({"affine", "perspective", "rotation", "resized-crop", "elastic", "thin-plate"})

# nerdyrodent/VQGAN-CLIP's two-letter codes, accepted as aliases.
ALIASES = {
    "af": "affine", "pe": "perspective", "ji": "jitter", "colour": "jitter", "color": "jitter",
    "sh": "sharpness", "gn": "noise", "er": "erasing", "hf": "flip", "ro": "rotation",
    "re": "resized-crop", "cr": "crop", "et": "elastic", "ts": "thin-plate",
}


def canonical_augments(names: Sequence[str]) -> tuple[str, ...]:
    """Validate augmentation names (aliases allowed) and return their canonical short names.

    Raises:
        ConfigError: an unknown name, with the closest known one.
    """
    canonical = []
    for raw in names:
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if name not in AUGMENTATIONS:
            close = difflib.get_close_matches(name, list(AUGMENTATIONS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"unknown augmentation {raw!r}; {hint}choose from {', '.join(AUGMENTATIONS)}."
            )
        if name not in canonical:
            canonical.append(name)
    return tuple(canonical)


def resample_matrices(starts: torch.Tensor, lengths: torch.Tensor, source: int, target: int,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Rows that crop ``[start, start + length)`` of a ``source``-long axis and resample it to
    ``target`` samples with a triangle filter as wide as the scale (antialiased when shrinking).

    Args:
        starts, lengths: (N,) crop starts and lengths in pixels.
        device: where to build the matrices (the image's device: no per-step copies).

    Returns:
        (N, target, source) float32 matrices whose rows sum to one.
    """
    starts, lengths = starts.to(device), lengths.to(device)
    scale = lengths.float() / target  # (N,) source pixels per output pixel
    offsets = torch.arange(target, device=device) + 0.5  # (target,) output pixel centres
    centres = starts.float()[:, None] + offsets[None] * scale[:, None]  # (N, target)
    positions = torch.arange(source, device=device) + 0.5  # (source,)
    support = scale.clamp(min=1.0)[:, None, None]
    weights = (1 - (positions[None, None] - centres[..., None]).abs() / support).clamp(min=0)  # (N, target, source)
    inside = (positions[None] >= starts[:, None]) & (positions[None] < (starts + lengths)[:, None])  # (N, source)
    weights = weights * inside[:, None, :]
    return weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-12)


def to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on ``device`` without making the CPU wait for the GPU: through pinned
    memory, copied asynchronously (a plain copy from pageable memory waits for the GPU's queue)."""
    if device.type != "cuda":
        return values.to(device)
    return values.pin_memory().to(device, non_blocking=True)


@functools.cache
def _yiq_matrices(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB->YIQ and YIQ->RGB on ``device``, copied there once."""
    return _RGB_TO_YIQ.to(device), _YIQ_TO_RGB.to(device)


class MakeCutouts(nn.Module):
    """Cut ``cutn`` augmented squares of side ``cut_size`` out of an image.

    Args:
        cut_size: the CLIP input size.
        cutn: cutouts per call.
        cut_pow: crop-size exponent (> 1 favours small crops).
        augments: canonical augmentation names (see :func:`canonical_augments`).
        noise_fac: maximum per-cutout noise strength (0 for none).
        wrap: ``x``, ``y`` or ``xy``: crops may run over that edge and continue at the opposite
            one (a seamless tile is seen across its seams).
    """

    def __init__(self, cut_size: int, cutn: int, *, cut_pow: float = 1.0, augments: Sequence[str] = (),
                 noise_fac: float = 0.0, wrap: str = ""):
        super().__init__()
        self.cut_size, self.cutn, self.cut_pow, self.noise_fac, self.wrap = cut_size, cutn, cut_pow, noise_fac, wrap
        self.augment = nn.Sequential(*(AUGMENTATIONS[name](cut_size) for name in canonical_augments(augments)))

    def geometry(self, height: int, width: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sizes, ys, xs) of ``cutn`` random square crops of an image of this size, drawn
        from the CPU ``generator`` (torch's global one when None). Along a wrapped axis a crop
        may start anywhere (it continues past the edge)."""
        max_size = min(height, width)
        min_size = min(max_size, self.cut_size)
        draws = torch.rand(self.cutn, generator=generator)
        sizes = (draws.pow(self.cut_pow) * (max_size - min_size) + min_size).long().clamp(1, max_size)
        ys = (torch.rand(self.cutn, generator=generator) * (height - (0 if "y" in self.wrap else sizes - 1))).long()
        xs = (torch.rand(self.cutn, generator=generator) * (width - (0 if "x" in self.wrap else sizes - 1))).long()
        return sizes, ys, xs

    def _wrapped(self, planes: torch.Tensor, extra: int) -> torch.Tensor:
        """``planes`` (..., H, W) with their first ``extra`` columns (rows) repeated after the
        last along the wrapped axes, so a crop that runs over the edge reads the other side."""
        if "x" in self.wrap:
            planes = torch.cat([planes, planes[..., :, :extra]], dim=-1)
        if "y" in self.wrap:
            planes = torch.cat([planes, planes[..., :extra, :]], dim=-2)
        return planes

    def forward(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(1, 3, H, W) image in [0, 1] -> (cutn, 3, cut_size, cut_size) cutouts; the crop
        geometry comes from ``generator``."""
        return self.cut(image, generator)[0]

    def cut(self, image: torch.Tensor, generator: torch.Generator | None = None,
            masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(1, 3, H, W) image in [0, 1] -> (cutn, 3, S, S) cutouts, and with ``masks`` (M, H, W)
        how much of each cutout each mask covers: (cutn, M), the mean of the mask over the crop."""
        height, width = image.shape[-2:]
        sizes, ys, xs = to_device(torch.stack(self.geometry(height, width, generator)), image.device)  # 3 x (N,)
        extra = min(height, width)
        if self.wrap:
            image = self._wrapped(image, extra)
        rows = resample_matrices(ys, sizes, image.shape[-2], self.cut_size, image.device).to(image.dtype)  # (N, S, H')
        cols = resample_matrices(xs, sizes, image.shape[-1], self.cut_size, image.device).to(image.dtype)  # (N, S, W')
        cutouts = rows[:, None] @ image @ cols.transpose(1, 2)[:, None]  # (N, 3, S, S)
        coverage = None
        if masks is not None:
            planes = self._wrapped(masks.to(rows), extra) if self.wrap else masks.to(rows)  # (M, H', W')
            # the mean over a crop's S x S samples of the resampled mask: each sample is a weighted
            # sum of the mask, so the mean is the mask weighted by the mean of the rows and columns
            coverage = torch.einsum("nh,mhw,nw->nm", rows.mean(dim=1), planes, cols.mean(dim=1))  # (N, M)
        if len(self.augment):
            augmented = self.augment(cutouts)
            # A degenerate random warp (a perspective whose corners nearly collapse) gives a cutout
            # of NaN: that cutout is used unaugmented, and the NaN its warp sends back in the
            # backward pass is dropped. Device operations only, so no host sync per step.
            finite = torch.isfinite(augmented).flatten(1).all(dim=1).view(-1, 1, 1, 1)  # (N, 1, 1, 1)
            if cutouts.requires_grad:
                cutouts.register_hook(lambda grad: torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0))
            cutouts = torch.where(finite, augmented, cutouts)
        if self.noise_fac:
            strength = torch.rand(self.cutn, 1, 1, 1, device=image.device, dtype=cutouts.dtype) * self.noise_fac
            cutouts = cutouts + strength * torch.randn_like(cutouts)
        return cutouts, coverage
