"""Prompt targets of one image: its text, image and noise prompts as each CLIP model sees them.

Text is embedded once per story phrase and model; image prompts are cut out and embedded
like the image itself (with the image's own random streams); noise prompts are seeded random
embeddings. :meth:`ImageTargets.at` gives the targets in force at a step.

A region prompt (``red sky @ sky.png``) scores the cutouts its mask covers; on an edit every
other prompt scores the cutouts the edit's mask covers. The masks are stacked per image
(:attr:`ImageTargets.masks`) and each target names its own by index.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from generator.devices import SeedStreams
from generator.io.images import cover, open_image, pil_to_tensor
from generator.text_to_image.edit import Canvas, region_mask
from generator.text_to_image.losses import ClipGuide, PromptTarget
from generator.text_to_image.prompts import PromptSchedule, PromptSpec, WeightedPrompt, parse_spec

MemberTargets = tuple[tuple[PromptTarget, ...], ...]
"""Targets per CLIP model of the ensemble: ``targets[model]``."""


@dataclass(frozen=True)
class ImageTargets:
    """Prompt targets per story phrase and per CLIP model, the schedule of the phrases, and the
    masks the targets' regions index.

    Attributes:
        masks: (M, H, W) on the canvas: the region prompts' masks, then an edit's mask; None
            when no target has a region.
        notes: things the user should hear about (a region mask stretched to fit).
    """

    schedule: PromptSchedule | None
    phrases: tuple[MemberTargets, ...]
    masks: torch.Tensor | None = None
    notes: tuple[str, ...] = field(default=())

    def at(self, step: int) -> MemberTargets:
        """The targets in force at ``step`` (counted from 0)."""
        return self.phrases[self.schedule.phrase_index(step) if self.schedule is not None else 0]


class _Regions:
    """The masks of a run's regions, loaded once each, and the index each prompt scores: an
    edit's mask first (prompts without a region score it), then each region's."""

    def __init__(self, canvas: Canvas):
        self.canvas = canvas
        self.paths: list[str] = []
        self.masks: list[torch.Tensor] = [] if canvas.mask is None else [canvas.mask]
        self.notes: list[str] = []

    def index(self, prompt: WeightedPrompt) -> int | None:
        if prompt.region is None:
            return None if self.canvas.mask is None else 0
        if prompt.region not in self.paths:
            values, notes = region_mask(prompt.region, self.canvas)
            self.paths.append(prompt.region)
            self.masks.append(values)
            self.notes += notes
        return self.paths.index(prompt.region) + (0 if self.canvas.mask is None else 1)

    def stack(self) -> torch.Tensor | None:
        return torch.stack(self.masks) if self.masks else None


def build_targets(guide: ClipGuide, spec: PromptSpec, *, steps: int, size: tuple[int, int],
                  streams: SeedStreams, canvas: Canvas | None = None) -> ImageTargets:
    """Embed ``spec`` with every model of ``guide`` for an image of ``size`` (W, H), made on
    ``canvas`` (default: a canvas of ``size``, no edit), whose masks the targets' regions index.

    Raises:
        InputError: the prompts are empty, malformed, or name an unreadable image or mask.
    """
    canvas = canvas or Canvas(size=size, output=size)
    regions = _Regions(canvas)
    schedule, images, noises = parse_spec(spec, steps=steps)
    pictures = [(prompt, pil_to_tensor(cover(open_image(prompt.text, what="image prompt"), size)))
                for prompt in images]
    shared: list[list[tuple[PromptTarget, int | None]]] = []
    for member in guide.members:
        clip, targets = member.clip, []
        for prompt, pixels in pictures:
            with torch.no_grad():
                embeds = clip.encode_image(guide.cutouts(member, pixels.to(clip.device), [streams])).float()
            targets.append((PromptTarget(f"image:{prompt.text}", embeds, prompt.weight, prompt.stop),
                            regions.index(prompt)))
        for noise in noises:
            embed = torch.randn(1, clip.embed_dim, generator=torch.Generator().manual_seed(noise.seed))
            targets.append((PromptTarget(f"noise:{noise.seed}", embed.to(clip.device), noise.weight),
                            regions.index(WeightedPrompt(str(noise.seed)))))
        shared.append(targets)
    phrases = schedule.phrases if schedule is not None else ((),)
    built = [_phrase_targets(guide, phrase, shared, regions) for phrase in phrases]
    return ImageTargets(schedule, tuple(built), regions.stack(), tuple(regions.notes))


def _phrase_targets(guide: ClipGuide, phrase: Sequence[WeightedPrompt],
                    shared: list[list[tuple[PromptTarget, int | None]]], regions: _Regions) -> MemberTargets:
    indices = [regions.index(prompt) for prompt in phrase]
    per_model = []
    for member, extra in zip(guide.members, shared, strict=True):
        texts = [prompt.text for prompt in phrase]
        embeds = member.clip.encode_text(texts) if texts else None
        text_targets = [PromptTarget(f"text:{prompt.text}", embeds[i : i + 1], prompt.weight, prompt.stop, indices[i])
                        for i, prompt in enumerate(phrase)]
        others = [dataclasses.replace(target, region=index) for target, index in extra]
        per_model.append(tuple(text_targets + others))
    return tuple(per_model)
