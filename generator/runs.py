"""A run in progress: the iterator of events a pipeline returns, and what a sink can ask it.

Every pipeline (text to image, prior sampling, upscaling) returns a :class:`GenerationRun`.
Iterating it does the work; ``close()`` cancels within one step; ``state`` tells how far it
got, and ``latest_image()`` decodes the latest state, so a sink keeps the work after a stop,
an error or Ctrl-C.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image

from generator.devices import is_out_of_memory, release_memory
from generator.events import Event

logger = logging.getLogger(__name__)


@dataclass
class RunState:
    """What a sink can ask a run at any time, including after a stop, an error or Ctrl-C.

    Attributes:
        mode: what kind of run this is: ``text-to-image``, ``sample``, ...
        label: what the run is called in folder names and PNG text (the prompt, or
            ``ffhq_transformer sample``).
        config: the resolved plain config; the seed is set from the start, the size once
            the run has started.
        step: units of work completed (optimisation steps, sampled rows).
        total: units planned (0 until known).
        decode: decodes the latest state into an image (None until there is one).
        images: results finished so far (prior sampling finishes one batch at a time).
        latent: the latest latent (1, C, h, w) on the CPU, for runs that optimise one (None otherwise).
    """

    mode: str
    label: str
    config: dict = field(default_factory=dict)
    step: int = 0
    total: int = 0
    decode: Callable[[], Image.Image] | None = None
    images: list[Image.Image] = field(default_factory=list)
    latent: Callable[[], torch.Tensor] | None = None

    @property
    def seed(self) -> int:
        """The run's seed (resolved before the run starts)."""
        return int(self.config["seed"])


class GenerationRun(Iterator[Event]):
    """An iterator of events for one run.

    ``close()`` cancels it (a sink's Stop button or Ctrl-C); ``latest_image()`` decodes the
    state reached so far, so a sink can keep the work after a stop or an error.
    """

    def __init__(self, events: Iterator[Event], state: RunState, device: torch.device | None = None):
        """``device``: where the run computes, whose cached memory is given back when keeping the
        latest image runs out of memory (None: CUDA's, if this process started CUDA)."""
        self._events = events
        self.state = state
        self.device = device

    def __iter__(self) -> GenerationRun:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        """Cancel the run; the models stay loaded."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def latest_image(self) -> Image.Image | None:
        """The image of the latest state, or None if nothing was produced (or it cannot be decoded)."""
        if self.state.decode is None:
            return None
        for attempt in range(2):  # once more after giving cached memory back
            failure: str | None = None
            try:
                return self.state.decode()
            except Exception as error:  # best effort after a failure
                # an out-of-memory error (CUDA's, or the CPU allocator's) is retried outside this
                # block, which holds the failed tensors
                failure = "out of memory" if is_out_of_memory(error) else str(error)
            if attempt == 0 and failure == "out of memory":
                if self.device is not None:
                    release_memory(self.device)
                elif torch.cuda.is_initialized():
                    torch.cuda.empty_cache()
                continue
            logger.warning("could not decode the latest image: %s", failure)
        return None

    def __enter__(self) -> GenerationRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
