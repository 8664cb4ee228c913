"""What a text-to-image run can be told before any model is loaded: its prompts parse, and
the images it names are there. Light on purpose (no model code is imported), so a command line
answers a mistake in a moment, before it imports the pipelines or downloads a weight."""

from __future__ import annotations

from generator.config import GenerationConfig
from generator.io.images import image_size, is_url
from generator.io.masks import ALPHA
from generator.text_to_image.prompts import PromptSpec, parse_spec


def check_settings(config: GenerationConfig) -> None:
    """What a run can be told without any model: its prompts parse and are not all empty, and
    every local image it names (init image, mask, image prompts, region masks) is there, is an
    image and is within the size limit (its header read, nothing decoded). Front ends call this
    before they load or download anything, so such a mistake is one sentence in a moment.

    Raises:
        InputError: the first problem found.
    """
    schedule, images, _ = parse_spec(PromptSpec(config.prompts, config.image_prompts, config.noise_prompts,
                                                config.change_prompt_every), steps=max(config.steps, 1))
    edit = config.edit
    named: list[tuple[str | None, str]] = []
    if config.init.init == "image":
        named.append((config.init.init_image, "image to edit" if edit.mask or edit.outpaint else "init image"))
    if edit.mask and edit.mask != ALPHA:
        named.append((edit.mask, "mask"))
    phrases = schedule.phrases if schedule is not None else ()
    named += [(prompt.text, "image prompt") for prompt in images]
    named += [(prompt.region, "region mask") for phrase in phrases for prompt in phrase] + \
        [(prompt.region, "region mask") for prompt in images]
    for path, what in named:
        if path and not is_url(path):
            image_size(path, what=what)
