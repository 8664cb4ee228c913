"""What an animation run shares with its sink: the mode name, its state and a resume point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from generator.io.flows import FlowCache
from generator.runs import RunState

FRAME_RECORDS = "frames.jsonl"


@dataclass
class AnimationState(RunState):
    """A run state that also knows the finished frames.

    Attributes:
        records: one record per finished frame (what ``frames.jsonl`` holds).
        last_frame: the latest finished frame.
        fps: the video's frame rate before interpolation and ``video_length``.
        audio: the file whose sound the video gets (a restyle of a video with sound).
        files: files the sink wrote outside the run writer (for the run record).
        flows: the input video's flow cache (a restyle with flow), which the sink keeps in the
            run folder.
        metrics: figures of the run for ``run.json`` (``warping_error``).
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    last_frame: Image.Image | None = None
    fps: float = 10.0
    audio: Path | None = None
    files: list[Path] = field(default_factory=list)
    flows: FlowCache | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Resume:
    """The finished frames of an interrupted animation, to continue from (see
    :func:`generator.animate.resume.read_resume`).

    Attributes:
        frames: frames 0..n-1 as saved.
        records: their per-frame records.
        parent: the interrupted run's folder.
    """

    frames: list[Image.Image]
    records: list[dict[str, Any]]
    parent: Path
