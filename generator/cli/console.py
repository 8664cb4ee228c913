"""The console sink shared by the commands: drive a run with a tqdm bar, write frames as they
come, print notices, and keep the work on Ctrl-C or an error."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from tqdm import tqdm

from generator.config import OutputConfig
from generator.errors import GeneratorError
from generator.events import Done, Notice, Preview, Progress
from generator.io.outputs import RunWriter
from generator.runs import GenerationRun

logger = logging.getLogger(__name__)
EXIT_INTERRUPTED = 130


class Interrupted(Exception):
    """Ctrl-C ended the run; the work so far was kept."""


def drive(run: GenerationRun, writer: RunWriter, output: OutputConfig, *, total: int, unit: str, desc: str,
          keep: Callable[[GenerationRun], None]) -> Done:
    """Iterate ``run`` to its :class:`Done`.

    On Ctrl-C or a :class:`GeneratorError` the run is closed, ``keep(run)`` writes what it
    produced, the frames become a video as asked, and :class:`Interrupted` (Ctrl-C) or the
    error is raised.
    """
    bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)
    stage = desc
    done: Done | None = None
    try:
        for event in run:
            if isinstance(event, Progress):
                if event.stage != stage:  # e.g. the prior's rows, then the optimisation steps
                    stage = event.stage
                    bar.reset(total=event.total)
                    bar.set_description(stage)
                bar.total = event.total
                bar.update(event.step - bar.n)
                if event.loss is not None:
                    bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
            elif isinstance(event, Preview):
                writer.write_frame(event.step, event.image)
            elif isinstance(event, Notice):
                tqdm.write(f"note: {event.message}", file=sys.stderr)
            elif isinstance(event, Done):
                done = event
    except (KeyboardInterrupt, GeneratorError) as error:
        bar.close()
        run.close()
        try:
            keep(run)
            write_video(writer, output)
        except GeneratorError as second:
            logger.error("%s", second)
        if isinstance(error, KeyboardInterrupt):
            print(f"interrupted at {unit} {run.state.step}; what was produced is in {writer.folder}", file=sys.stderr)
            raise Interrupted from None
        raise
    bar.close()
    assert done is not None, "a run ended without a Done event"
    write_video(writer, output)
    return done


def write_video(writer: RunWriter, output: OutputConfig) -> None:
    """The frames as video.mp4 and/or video.gif, as the output config asks."""
    writer.write_video(fps=output.fps, mp4=output.video, gif=output.gif)
