"""The command line's progress bar (issue 26, point 7): none appears before the first progress,
so a run that stops at its checks or before its first step leaves no empty bar behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from generator.cli.console import present
from generator.errors import InputError
from generator.events import Done, Notice, Progress
from generator.runs import GenerationRun, RunState


def _run(events) -> GenerationRun:
    return GenerationRun(iter(events), RunState(mode="text-to-image", label="x", config={"seed": 1}, total=10))


def _failing():
    yield Notice("the size was rounded down to 32x32")
    raise InputError("the prompt is empty.")


def test_a_run_that_fails_before_any_progress_shows_no_bar(tmp_path: Path, capsys) -> None:
    with pytest.raises(InputError):
        present(_run(_failing()), tmp_path, unit="step")
    err = capsys.readouterr().err
    assert err == "note: the size was rounded down to 32x32\n"  # the notice, and no bar (no "0step", no "|")


def test_a_run_with_progress_shows_its_bar(tmp_path: Path, capsys) -> None:
    image = Image.new("RGB", (8, 8))
    done = Done(images=(image,), config={"seed": 1}, seed=1)
    events = [Progress("optimise", step, 2, 0.1 * step) for step in (1, 2)] + [done]
    present(_run(events), tmp_path, unit="step")
    err = capsys.readouterr().err
    assert "optimise" in err and "2/2" in err
