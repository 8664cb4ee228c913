"""What a run yields: typed events that sinks (the CLI, the web UI, tests) consume.

Events hold no GPU tensors: images are PIL images, numbers are Python floats.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from PIL import Image


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the run (a rounded size, a fallback)."""

    message: str


@dataclass(frozen=True)
class Progress:
    """One unit of work done: an optimisation step, a sampled row, an upscaled tile.

    Attributes:
        stage: ``optimise``, ``sample``, ``upscale``, ...
        step: units done so far in this stage (1-based).
        total: units in this stage.
        elapsed: seconds since the stage started.
        loss: the total loss of an optimisation step.
        losses: its parts by name.
    """

    stage: str
    step: int
    total: int
    elapsed: float = 0.0
    loss: float | None = None
    losses: Mapping[str, float] = field(default_factory=dict)

    @property
    def eta(self) -> float | None:
        """Estimated seconds left in this stage."""
        if self.step <= 0:
            return None
        return self.elapsed / self.step * (self.total - self.step)


@dataclass(frozen=True)
class Preview:
    """An intermediate image (a frame of the animation)."""

    stage: str
    step: int
    image: Image.Image


@dataclass(frozen=True)
class Done:
    """The run finished.

    Attributes:
        images: the results.
        config: the resolved config as a plain dict (seed and size filled in).
        seed: the seed that drove every random draw.
        timings: seconds per phase (``load``, ``prepare``, ``optimise``, ``total``, ...).
        upscaled: upscaled copies of ``images`` (same order), when the config asks for them.
    """

    images: tuple[Image.Image, ...]
    config: Mapping[str, Any]
    seed: int
    timings: Mapping[str, float] = field(default_factory=dict)
    upscaled: tuple[Image.Image, ...] = ()


Event = Notice | Progress | Preview | Done


Result = TypeVar("Result")
Out = TypeVar("Out")


def relay(events: Generator[Event, None, Result], transform: Callable[[Event], Out]) -> Generator[Out, None, Result]:
    """Yield ``transform(event)`` for each event of a sub-generator and return its value
    (``yield from`` with a translation, e.g. events into UI updates)."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        yield transform(event)


def drain(events: Generator[Event, None, Result], on_event: Callable[[Event], None] | None = None) -> Result:
    """Run a sub-generator to its end, handing each event to ``on_event`` (or dropping it), and
    return its value."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
