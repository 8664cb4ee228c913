"""Training as a stream of events that a front end can watch and stop: the VQGAN's blocking
:meth:`~generator.train.vqgan_train.VQGANTraining.run` relayed from a worker thread, and the
points of a loss plot, from progress events or a run's ``metrics.jsonl``.

The prior's :meth:`~generator.train.prior_training.PriorTraining.run` is a generator already;
:func:`vqgan_events` makes the VQGAN's run one too, so both are followed, and stopped by
closing them, the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.events import Event, Progress
from generator.train.vqgan_train import TrainResult, VQGANTraining

AHEAD = 2
"""Events the VQGAN's training may run ahead of whoever follows it (:func:`vqgan_events`)."""
_POLL_SECONDS = 0.1
PLOT_POINTS = 400  # points per curve sent to the plot; longer curves are averaged in buckets
METRICS_FILE = "metrics.jsonl"  # both kinds of run write it (one line per logged step)
VQGAN_CURVES = {"loss": "total", "l1": "L1", "perceptual": "perceptual", "codebook_loss": "codebook",
                "d_loss": "discriminator"}
"""The VQGAN's losses a plot shows, by their names in progress events and metrics, with their labels."""
PRIOR_CURVES = {"train_loss": "train", "val_loss": "validation"}
"""The prior's losses a plot shows (its progress events call the training loss ``loss``)."""


@dataclass
class _Ended:
    result: TrainResult | None = None
    error: BaseException | None = None


def vqgan_events(training: VQGANTraining, until: int | None = None) -> Generator[Event, None, TrainResult]:
    """:meth:`VQGANTraining.run` as a generator of its events, the training in a worker thread.

    The training waits for its events to be taken (it runs at most :data:`AHEAD` events ahead
    of the consumer), so what the consumer shows is where the training is. Closing the
    generator (a Stop) stops the training after the step under way: its next event raises
    ``KeyboardInterrupt`` in the training, which writes the checkpoint of the last step done
    (so the run can be resumed; ``training.step`` is that step) before ``close()`` returns.

    Returns:
        The :class:`TrainResult` of a run that reached its last step.

    Raises:
        Whatever the training raised (its one-sentence errors).
    """
    events: queue.Queue[Event | _Ended] = queue.Queue(maxsize=AHEAD)
    stopping = threading.Event()

    def relay(event: Event) -> None:
        while True:
            if stopping.is_set():
                raise KeyboardInterrupt  # the training saves its checkpoint and ends
            try:
                events.put(event, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            events.put(_Ended(result=training.run(until, on_event=relay)))
        except KeyboardInterrupt:
            events.put(_Ended())
        except BaseException as error:  # handed to the consumer, which raises it
            events.put(_Ended(error=error))

    worker = threading.Thread(target=work, name=f"train-{training.name}", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            if isinstance(item, _Ended):
                break
            yield item
    finally:
        stopping.set()
        while worker.is_alive():  # it may wait to hand over its last event: take and drop them
            with contextlib.suppress(queue.Empty):
                events.get(timeout=_POLL_SECONDS)
        worker.join()
    if item.error is not None:
        raise item.error
    if item.result is None:  # stopped by something other than close(): say so as Ctrl-C does
        raise KeyboardInterrupt
    return item.result


@dataclass
class LossCurves:
    """The points of a loss plot, ``(step, loss, curve)``, in the order they came.

    Attributes:
        prior: the run is a prior's (its progress ``loss`` is the training loss, and the
            validation loss is a point only at the steps it was computed).
        offset: added to a progress event's step (a resumed VQGAN run counts from where it starts).
        points: the points so far.
    """

    prior: bool = False
    offset: int = 0
    points: list[tuple[int, float, str]] = field(default_factory=list)
    _last_validation: float | None = None

    def add(self, event: Progress) -> bool:
        """Add the losses of a progress event of the training stage; whether any was added."""
        if event.loss is None:
            return False
        step = event.step + self.offset
        before = len(self.points)
        if self.prior:
            self.points.append((step, float(event.loss), PRIOR_CURVES["train_loss"]))
            validation = event.losses.get("val_loss")
            if validation is not None and validation != self._last_validation:  # computed at this step
                self._last_validation = float(validation)
                self.points.append((step, float(validation), PRIOR_CURVES["val_loss"]))
        else:
            self._add_line(step, {"loss": event.loss, **event.losses})
        return len(self.points) > before

    def read(self, folder: Path) -> None:
        """Add the losses a run folder's ``metrics.jsonl`` recorded (a resumed run's history)."""
        try:
            lines = (folder / METRICS_FILE).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return
        for text in lines:
            try:
                line = json.loads(text)
                step = int(line["step"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash, or no metrics line
            if self.prior:
                for key, curve in PRIOR_CURVES.items():
                    if isinstance(line.get(key), int | float):
                        self.points.append((step, float(line[key]), curve))
                if isinstance(line.get("val_loss"), int | float):
                    self._last_validation = float(line["val_loss"])
            else:
                self._add_line(step, line)

    def _add_line(self, step: int, values: Mapping[str, Any]) -> None:
        for key, curve in VQGAN_CURVES.items():
            value = values.get(key)
            if isinstance(value, int | float) and not (key == "perceptual" and not value):
                self.points.append((step, float(value), curve))


def loss_frame(curves: LossCurves, most: int = PLOT_POINTS) -> Any:
    """The plot's data: a pandas DataFrame of ``step``, ``loss`` and ``kind`` (the curve), each
    curve averaged in buckets down to ``most`` points."""
    import pandas  # gradio's own dependency; imported when a plot is drawn

    by_curve: dict[str, list[tuple[int, float]]] = {}
    for step, loss, curve in curves.points:
        by_curve.setdefault(curve, []).append((step, loss))
    rows = []
    for curve, points in by_curve.items():
        width = math.ceil(len(points) / most)
        for first in range(0, len(points), width):
            chunk = points[first:first + width]
            rows.append((chunk[-1][0], sum(loss for _, loss in chunk) / len(chunk), curve))
    steps, losses, kinds = zip(*rows, strict=True) if rows else ((), (), ())
    return pandas.DataFrame({"step": pandas.Series(steps, dtype="int64"),  # typed: an empty frame too, so
                             "loss": pandas.Series(losses, dtype="float64"),  # the axes stay numbers
                             "kind": pandas.Series(kinds, dtype="string")})
