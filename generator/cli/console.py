"""The console presentation of a run: a tqdm bar, notices, and the outcome on stderr.

The work itself (frames, final files, keeping the work on Ctrl-C or an error) is done by
the one driver, :func:`generator.drive.drive`; this module only shows it.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from generator.drive import RunRecord, drive
from generator.events import Notice, Progress
from generator.runs import GenerationRun

EXIT_INTERRUPTED = 130


class Interrupted(Exception):
    """Ctrl-C ended the run; the work so far was kept."""


def present(run: GenerationRun, out_dir: Path, *, unit: str, parent: Path | None = None) -> RunRecord:
    """Drive ``run`` into a new folder under ``out_dir`` with a progress bar on stderr.

    Each stage (the prior's rows, the optimisation steps, the upscaler's tiles) gets the bar
    to itself; log lines and notices are printed above it, never into it.

    Raises:
        Interrupted: Ctrl-C; what was produced is kept and its folder named.
        GeneratorError: the run failed; what was produced is kept.
    """
    record = RunRecord(run.state.mode)
    bar: tqdm | None = None  # made by the first progress: a run that stops before it leaves no empty bar
    stage = None
    try:
        with logging_redirect_tqdm(), contextlib.closing(drive(run, out_dir, record=record, parent=parent)) as events:
            for event in events:
                if isinstance(event, Progress):
                    if bar is None:
                        bar = tqdm(total=event.total or None, unit=unit, file=sys.stderr, dynamic_ncols=True)
                    if event.stage != stage:  # a new stage: its own bar, no stale loss or unit
                        stage = event.stage
                        bar.set_postfix_str("", refresh=False)
                        bar.set_description(stage, refresh=False)
                        bar.reset(total=event.total)
                    bar.total = event.total
                    bar.update(event.step - bar.n)
                    if event.loss is not None:
                        bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
                elif isinstance(event, Notice):
                    tqdm.write(f"note: {event.message}", file=sys.stderr)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        where = f"; what was produced is in {record.folder}" if record.folder else "; nothing was produced yet"
        print(f"interrupted at {unit} {record.step}{where}", file=sys.stderr)
        raise Interrupted from None
    finally:
        if bar is not None:
            bar.close()
    return record
