"""The one driver of a run's events, shared by the command line and the web UI.

:func:`drive` iterates a :class:`GenerationRun` and forwards every event to the front end,
which only presents them (a tqdm bar, widget updates). The driver does the rest the same
way for everyone: frames as previews arrive, the final files of the run's mode (its
descriptor's ``outputs``, :mod:`generator.modes`) when the run is done, and,
when it is stopped (Ctrl-C, the Stop button) or fails, the work so far: the latest image,
the video of the frames so far, and a config that records the step reached. Every run
folder ends with ``run.json``: the mode, how the run ended, the step reached, timings.

The run folder is created by the first file written, so a run that fails its checks leaves
nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

from generator import modes
from generator.config import OutputConfig
from generator.config_schema import build_config
from generator.errors import GeneratorError
from generator.events import Done, Event, Preview
from generator.io.outputs import RunWriter
from generator.runs import GenerationRun, RunState

logger = logging.getLogger(__name__)

RUN_RECORD = "run.json"


@dataclass
class RunRecord:
    """What became of a run; filled in as the driver goes, so it is readable after a stop.

    Attributes:
        mode: the name of the run's mode (:mod:`generator.modes`).
        status: ``running``, then ``done``, ``stopped`` or ``failed``.
        folder: the run folder (None until the first file is written).
        result: the main image (``final.png``), also after a stop.
        files: every file written, in order.
        step, total: work done and planned (steps, rows).
        error: the one-sentence error of a failed run.
        done: the :class:`Done` event of a finished run.
    """

    mode: str
    status: str = "running"
    folder: Path | None = None
    result: Path | None = None
    files: list[Path] = field(default_factory=list)
    step: int = 0
    total: int = 0
    error: str | None = None
    done: Done | None = None

    @property
    def videos(self) -> list[Path]:
        """The videos written for this run."""
        return [path for path in self.files if path.suffix in (".mp4", ".gif")]


def drive(run: GenerationRun, out_dir: Path, *, record: RunRecord | None = None,
          parent: Path | None = None) -> Generator[Event, None, RunRecord]:
    """Iterate ``run`` to its end, yielding its events for the front end to present.

    Frames are written as previews arrive; at the end the mode's files, the video and
    ``run.json``. On a stop (``close()`` of this generator, Ctrl-C) or a
    :class:`GeneratorError` the run is closed, its work so far is kept, and the exception
    goes on. ``record`` (returned too) tells what happened; ``parent`` is recorded in
    ``run.json`` for a run continued from another.
    """
    state = run.state
    record = record if record is not None else RunRecord(state.mode)
    writer = RunWriter.new(out_dir, prompt=state.label, seed=state.seed)
    outputs = modes.get(state.mode).outputs
    try:
        for event in run:
            record.step, record.total = state.step, state.total
            if isinstance(event, Preview):
                preview = getattr(outputs, "preview", None)  # a mode may file its previews itself
                if preview is not None:
                    preview(writer, event, state)
                else:
                    writer.write_frame(event.step, event.image)
                record.folder = writer.folder
            elif isinstance(event, Done):
                record.done = event
            yield event
    except (GeneratorExit, KeyboardInterrupt, GeneratorError) as error:
        run.close()
        record.step = state.step
        failed = isinstance(error, GeneratorError)
        record.error = str(error) if failed else None
        try:
            record.result = outputs.keep(writer, run)
            if writer.written:
                _conclude(writer, record, state, "failed" if failed else "stopped", parent)
        except GeneratorError as second:
            logger.error("%s", second)
        record.status = "failed" if failed else "stopped"
        record.folder, record.files = writer.folder, writer.written
        raise
    assert record.done is not None, "a run ended without a Done event"
    record.result = outputs.finish(writer, record.done, state)
    _conclude(writer, record, state, "done", parent)
    return record


def _conclude(writer: RunWriter, record: RunRecord, state: RunState, status: str, parent: Path | None) -> None:
    """The video of the frames (as the run's output config asks) and ``run.json``."""
    record.status = status
    output = build_config(OutputConfig, state.config.get("output", {}))
    video = getattr(modes.get(state.mode).outputs, "video", None)  # a mode may make its video itself
    try:
        if video is not None:
            video(writer, state)
        else:
            writer.write_video(fps=output.fps, mp4=output.video, gif=output.gif)
    finally:
        done = record.done
        summary = {"mode": state.mode, "label": state.label, "status": status, "step": state.step,
                   "total": state.total, "seed": state.seed, "error": record.error,
                   "parent": str(parent) if parent else None,
                   "timings": dict(done.timings) if done is not None else {},
                   **({"metrics": dict(state.metrics)} if getattr(state, "metrics", None) else {})}
        writer.write_json(summary, RUN_RECORD)
        record.folder, record.files = writer.folder, writer.written + list(getattr(state, "files", ()))


