"""CLIP guidance: prompt targets, spherical-distance losses, and the ensemble that scores an image.

Each CLIP model embeds its own cutouts of the image (at its own input size, normalised with
its own mean and std). Every prompt contributes ``|w| * mean(d)`` where ``d`` is the squared
spherical distance between image and prompt embeddings, with the sign of ``w`` (a negative
weight pushes away) and a stop: once ``d`` falls below it, that prompt stops pulling. Models
are weighted by their ensemble weight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from generator.devices import SeedStreams
from generator.text_to_image.clip import ClipModel
from generator.text_to_image.cutouts import MakeCutouts


class _ReplaceGrad(torch.autograd.Function):
    """Forward ``x_forward``, backward through ``x_backward``."""

    @staticmethod
    def forward(ctx, x_forward: torch.Tensor, x_backward: torch.Tensor) -> torch.Tensor:
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad_in.sum_to_size(ctx.shape)


def replace_grad(x_forward: torch.Tensor, x_backward: torch.Tensor) -> torch.Tensor:
    """The value of ``x_forward`` with the gradient of ``x_backward``."""
    return _ReplaceGrad.apply(x_forward, x_backward)


class _ClampWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, low: float, high: float) -> torch.Tensor:
        ctx.low, ctx.high = low, high
        ctx.save_for_backward(x)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad_in: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        # Pass the gradient except where it would push a clamped value further out. The test
        # runs in float32: in fp16 the product of a small gradient and a small overshoot
        # underflows to zero, which would let the outward gradient through.
        outward = grad_in.float() * (x.float() - x.float().clamp(ctx.low, ctx.high))
        return grad_in * (outward >= 0), None, None


def clamp_with_grad(x: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Clamp whose gradient still flows back into the valid range."""
    return _ClampWithGrad.apply(x, low, high)


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between unit embeddings: (N, D), (M, D) -> (N, M)."""
    a = F.normalize(a.float(), dim=-1)[:, None]  # (N, 1, D)
    b = F.normalize(b.float(), dim=-1)[None]  # (1, M, D)
    return (a - b).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


@dataclass(frozen=True)
class PromptTarget:
    """One prompt as one CLIP model sees it.

    Attributes:
        label: for loss breakdowns (``text:city at night``).
        embeds: (M, D) target embeddings (M > 1 for image prompts: one per cutout).
        weight: signed weight; negative pushes away.
        stop: the distance below which this prompt stops pulling.
        region: the index of the mask (in the image's stack of masks) whose cutouts this
            prompt scores, each weighted by how much of it the mask covers; None: every cutout
            counts the same.
    """

    label: str
    embeds: torch.Tensor
    weight: float
    stop: float = float("-inf")
    region: int | None = None

    def loss(self, image_embeds: torch.Tensor, coverage: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss for (N, D) image embeddings; ``coverage`` (N,) weights the cutouts (a
        cutout outside the region counts nothing)."""
        dists = spherical_distance(image_embeds, self.embeds)  # (N, M)
        sign = 1.0 if self.weight > 0 else -1.0
        dists = dists * sign
        dists = replace_grad(dists, torch.clamp(dists, min=self.stop))
        if coverage is None:
            return abs(self.weight) * dists.mean()
        weights = coverage.float()[:, None]  # (N, 1)
        return abs(self.weight) * (dists * weights).sum() / (weights.sum() * dists.shape[1]).clamp(min=1e-6)


@dataclass
class GuideMember:
    """A CLIP model of the ensemble with its weight and its cutout maker; ``encode`` replaces
    ``clip.encode_image`` when set (a compiled version of it)."""

    clip: ClipModel
    weight: float
    cutouts: MakeCutouts
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None


class ClipGuide:
    """Scores images against per-model prompt targets.

    Members that share an input size share their cutouts, so the expensive augmentation runs
    once per size. Images are scored together (one CLIP batch per member) but each image's
    cutouts draw from its own :class:`SeedStreams`, so its loss is what it would be alone.
    """

    def __init__(self, members: Sequence[GuideMember]):
        self.members = list(members)

    def cutouts(self, member: GuideMember, pixels: torch.Tensor, streams: Sequence[SeedStreams]) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] -> (B * cutn, 3, S, S) cutouts, image by image."""
        return self._cut(member, pixels, streams)[0]

    def _cut(self, member: GuideMember, pixels: torch.Tensor, streams: Sequence[SeedStreams],
             masks: Sequence[torch.Tensor | None] | None = None) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The cutouts of every image, and per image how much of each cutout each of its masks
        (M, H, W) covers, (cutn, M) (None for an image without masks).

        Cutting and augmenting run in float32 with autocast off (kornia's geometry is not
        written for half precision); only the CLIP encoders run under the caller's autocast.
        """
        masks = masks or [None] * len(streams)
        with torch.autocast(device_type=pixels.device.type, enabled=False):
            pieces, coverages = [], []
            for index, (stream, planes) in enumerate(zip(streams, masks, strict=True)):
                with stream.active():
                    cutouts, coverage = member.cutouts.cut(pixels[index : index + 1].float(), stream.generator, planes)
                pieces.append(cutouts)
                coverages.append(coverage)
        return torch.cat(pieces), coverages

    def embed_cutouts(self, pixels: torch.Tensor, streams: Sequence[SeedStreams],
                      masks: Sequence[torch.Tensor | None] | None = None
                      ) -> list[tuple[torch.Tensor, list[torch.Tensor | None]]]:
        """(B, 3, H, W) images in [0, 1] -> each member's (B, cutn, D) cutout embeddings, with
        each image's mask coverage of its cutouts (see :meth:`_cut`)."""
        by_size: dict[int, tuple[torch.Tensor, list[torch.Tensor | None]]] = {}
        embeds = []
        for member in self.members:
            size = member.clip.input_size
            if size not in by_size:
                by_size[size] = self._cut(member, pixels, streams, masks)
            cutouts, coverages = by_size[size]
            encoded = (member.encode or member.clip.encode_image)(cutouts)  # (B * cutn, D)
            embeds.append((encoded.view(len(streams), -1, encoded.shape[-1]), coverages))
        return embeds

    def losses(self, pixels: torch.Tensor, targets: Sequence[Sequence[Sequence[PromptTarget]]],
               streams: Sequence[SeedStreams], masks: Sequence[torch.Tensor | None] | None = None
               ) -> list[dict[str, torch.Tensor]]:
        """Per image, the weighted prompt losses by label; ``targets[b][i]`` are image b's
        targets for member i; ``masks[b]`` (M, H, W) are the masks its targets' regions index."""
        per_image: list[dict[str, torch.Tensor]] = [{} for _ in streams]
        embedded = self.embed_cutouts(pixels, streams, masks)
        for index, (member, (embeds, coverages)) in enumerate(zip(self.members, embedded, strict=True)):
            for image, out in enumerate(per_image):
                for target in targets[image][index]:
                    coverage = coverages[image]
                    weights = None if target.region is None or coverage is None else coverage[:, target.region]
                    value = member.weight * target.loss(embeds[image], weights)
                    out[target.label] = out[target.label] + value if target.label in out else value
        return per_image
