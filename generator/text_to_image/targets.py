"""Prompt targets of one image: its text, image and noise prompts as each CLIP model sees them.

Text is embedded once per story phrase and model; image prompts are cut out and embedded
like the image itself (with the image's own random streams); noise prompts are seeded random
embeddings. :meth:`ImageTargets.at` gives the targets in force at a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from generator.devices import SeedStreams
from generator.errors import InputError
from generator.io.images import cover, open_image, pil_to_tensor
from generator.text_to_image.losses import ClipGuide, PromptTarget
from generator.text_to_image.prompts import (
    PromptSchedule,
    make_schedule,
    parse_image_prompts,
    parse_noise_prompts,
)

MemberTargets = tuple[tuple[PromptTarget, ...], ...]
"""Targets per CLIP model of the ensemble: ``targets[model]``."""


@dataclass(frozen=True)
class PromptSpec:
    """What an image is asked to look like, in prompt grammar (see generator/text_to_image/prompts.py).

    Attributes:
        prompts: text prompts; ``^`` separates story phrases.
        image_prompts: image files, ``path:weight:stop | ...``.
        noise_prompts: ``seed:weight | ...``.
        change_every: steps per story phrase (0: split ``steps`` evenly).
    """

    prompts: str = ""
    image_prompts: str = ""
    noise_prompts: str = ""
    change_every: int = 0


@dataclass(frozen=True)
class ImageTargets:
    """Prompt targets per story phrase and per CLIP model, and the schedule of the phrases."""

    schedule: PromptSchedule | None
    phrases: tuple[MemberTargets, ...]

    def at(self, step: int) -> MemberTargets:
        """The targets in force at ``step`` (counted from 0)."""
        return self.phrases[self.schedule.phrase_index(step) if self.schedule is not None else 0]


def build_targets(guide: ClipGuide, spec: PromptSpec, *, steps: int, size: tuple[int, int],
                  streams: SeedStreams) -> ImageTargets:
    """Embed ``spec`` with every model of ``guide`` for an image of ``size`` (W, H).

    Raises:
        InputError: the prompts are empty, malformed, or name an unreadable image.
    """
    schedule = make_schedule(spec.prompts, steps=steps, change_every=spec.change_every) \
        if spec.prompts.strip() else None
    images = parse_image_prompts(spec.image_prompts) if spec.image_prompts.strip() else ()
    noises = parse_noise_prompts(spec.noise_prompts) if spec.noise_prompts.strip() else ()
    if schedule is None and not images and not noises:
        raise InputError("the prompt is empty; give some text to draw, an image prompt or a noise prompt.")
    pictures = [(prompt, pil_to_tensor(cover(open_image(prompt.text, what="image prompt"), size)))
                for prompt in images]
    shared: list[list[PromptTarget]] = []
    for member in guide.members:
        clip, targets = member.clip, []
        for prompt, pixels in pictures:
            with torch.no_grad():
                embeds = clip.encode_image(guide.cutouts(member, pixels.to(clip.device), [streams])).float()
            targets.append(PromptTarget(f"image:{prompt.text}", embeds, prompt.weight, prompt.stop))
        for noise in noises:
            embed = torch.randn(1, clip.embed_dim, generator=torch.Generator().manual_seed(noise.seed))
            targets.append(PromptTarget(f"noise:{noise.seed}", embed.to(clip.device), noise.weight))
        shared.append(targets)
    phrases = schedule.phrases if schedule is not None else ((),)
    return ImageTargets(schedule, tuple(_phrase_targets(guide, phrase, shared) for phrase in phrases))


def _phrase_targets(guide: ClipGuide, phrase: Sequence, shared: list[list[PromptTarget]]) -> MemberTargets:
    per_model = []
    for member, extra in zip(guide.members, shared, strict=True):
        texts = [prompt.text for prompt in phrase]
        embeds = member.clip.encode_text(texts) if texts else None
        text_targets = [PromptTarget(f"text:{prompt.text}", embeds[i : i + 1], prompt.weight, prompt.stop)
                        for i, prompt in enumerate(phrase)]
        per_model.append(tuple(text_targets + extra))
    return tuple(per_model)
