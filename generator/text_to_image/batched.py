"""Text-to-image runs optimised together: which configs may share a batch
(:func:`batch_key`), and the run that yields each image's events (:class:`BatchRun`, made by
:meth:`generator.text_to_image.pipeline.TextToImage.run_batch`)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from generator.config import GenerationConfig
from generator.events import Event
from generator.runs import RunState

ALL = -1
"""The image index of a :class:`BatchRun` event that concerns every image of the batch."""

_PER_IMAGE = ("prompts", "image_prompts", "noise_prompts", "change_prompt_every", "seed", "init", "upscale")
_PER_IMAGE_OPTIM = ("lr", "init_weight", "init_weight_decay_steps", "tv_weight")
_PER_IMAGE_OUTPUT = ("video", "gif", "fps")


def batch_key(config: GenerationConfig) -> str:
    """What runs optimised together must share (size, steps, models, cutouts, optimiser,
    precision, previews, edit settings...), as text: configs with equal keys can share a
    :meth:`TextToImage.run_batch`. An edit shares a batch with nothing (its key is all of it)."""
    shared = config.to_dict()
    if config.edit.edits:  # an edit's canvas comes from its own image: it is optimised alone
        return json.dumps(shared, sort_keys=True)
    for name in _PER_IMAGE:
        shared.pop(name)
    for name in _PER_IMAGE_OPTIM:
        shared["optim"].pop(name)
    for name in _PER_IMAGE_OUTPUT:
        shared["output"].pop(name)
    return json.dumps(shared, sort_keys=True)


class BatchRun:
    """Text-to-image runs optimised together: iterating yields ``(index, event)`` pairs, where
    ``index`` is the run's place in the batch or :data:`ALL`; each run ends with its own
    :class:`Done`. ``states[i]`` is run ``i``'s :class:`RunState` (its ``decode`` gives that
    image), so a sink can keep each image after a stop or a failure.

    An image made in a batch matches the same config run alone: same draws, same prompts;
    only the float rounding of batched convolutions and matrix products differs (on the CPU
    at most 2 of 255 per pixel after 30 steps of the tiny test models; tests/batch checks it).
    """

    def __init__(self, events: Iterator[tuple[int, Event]], states: list[RunState]):
        self._events = events
        self.states = states

    def __iter__(self) -> BatchRun:
        return self

    def __next__(self) -> tuple[int, Event]:
        return next(self._events)

    def close(self) -> None:
        """Cancel the runs; the models stay loaded."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()
