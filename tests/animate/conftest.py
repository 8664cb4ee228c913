"""Animation runs on the tiny models, driven by the one run driver into a run folder."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from generator.animate.config import AnimationConfig
from generator.animate.pipeline import Animator
from generator.animate.state import Resume
from generator.config_schema import merge
from generator.drive import RunRecord, drive
from generator.io.ffmpeg import run_ffmpeg
from tests.factories import tiny_run_config


def animation_config(files: Any, **overrides: Any) -> AnimationConfig:
    """A tiny animation: 32x32, 4 cutouts, float32, 1 first-frame step, 1 step per frame, 3 frames."""
    base = merge(tiny_run_config(files).to_dict(), {"steps": 1, "steps_per_frame": 1, "frames": 3})
    return AnimationConfig.from_dict(merge(base, overrides))


def animate(pipeline: Any, config: AnimationConfig, out: Path, resume: Resume | None = None) -> RunRecord:
    """Drive an animation to its end; the record says what was written."""
    events = drive(Animator(pipeline).run(config, resume), out)
    while True:
        try:
            next(events)
        except StopIteration as stop:
            return stop.value


def frame_paths(folder: Path) -> list[Path]:
    """The published frames of a run folder in order (not the temporary files of a write in progress)."""
    return sorted(path for path in (folder / "frames").glob("*.png") if path.stem.isdigit())


def frames_of(folder: Path) -> list[np.ndarray]:
    """The frames of a run folder in order, as uint8 arrays."""
    return [np.asarray(Image.open(path).convert("RGB")) for path in frame_paths(folder)]


def ffmpeg(*args: str) -> subprocess.CompletedProcess:
    """The bundled ffmpeg (its description of an input goes to stderr)."""
    return run_ffmpeg(list(args))


@pytest.fixture(scope="session")
def clip_with_sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-frame 32x32 video at 12 fps with a sine-tone sound track, made by the bundled ffmpeg."""
    path = tmp_path_factory.mktemp("video") / "input.mp4"
    made = ffmpeg("-f", "lavfi", "-i", "testsrc=size=32x32:rate=12:duration=0.5", "-f", "lavfi",
                  "-i", "sine=frequency=440:duration=0.5", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                  "-shortest", "-y", str(path))
    assert made.returncode == 0, made.stderr
    return path
