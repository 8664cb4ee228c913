r"""Keyframes: per-frame values of the motion settings, and prompts that change at frames.

Numbers. A motion setting is a constant (``1.02``) or keyframes ``FRAME:VALUE`` separated by
commas (``0:1.0, 60:1.04, 120:1.0``), the colon form of the prompt grammar's ``text:weight``.
Between keyframes the value is interpolated linearly, or with ``smooth`` eased in and out of
every keyframe (half a cosine); before the first keyframe the first value holds, after the
last the last. Frames must increase.

Prompts. ``FRAME=PROMPT`` (``--prompt-at "30=a forest | smoke:-0.5"``, repeated): from that
frame on, PROMPT replaces the prompts. Only a leading whole number followed by ``=`` is the
frame, so PROMPT is the ordinary prompt grammar, colons and URLs included
(``"45=a photo: sunset | http://host/a.png"``: frame 45, then that prompt). The
``=`` was chosen because ``:`` already means a weight and ``^`` a story phrase. Alternatively
a ``^`` story advances every ``change_prompt_every`` frames (0: the phrases split the frames
evenly); the two cannot be mixed.

Anything malformed is an :class:`InputError` whose one sentence quotes the bad part.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from generator.errors import InputError
from generator.text_to_image.prompts import make_schedule

_FRAME_PROMPT = re.compile(r"\s*(\d+)\s*=(.*)", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _number(text: str, name: str, whole: str) -> float:
    if not _NUMBER.fullmatch(text.strip()):
        raise InputError(f"{name} {_show(whole)} has {_show(text.strip())} where a number should be; "
                         "write a number such as 1.02, or keyframes such as '0:1.0, 60:1.04'.")
    return float(text)


@dataclass(frozen=True)
class Keyframes:
    """A value per frame: ``(frame, value)`` pairs with increasing frames.

    Attributes:
        points: the keyframes; one point at frame 0 is a constant.
        smooth: ease in and out of every keyframe instead of straight lines.
    """

    points: tuple[tuple[int, float], ...]
    smooth: bool = False

    def at(self, frame: int) -> float:
        """The value at ``frame``: held before the first keyframe and after the last."""
        points = self.points
        if frame <= points[0][0]:
            return points[0][1]
        for (start, low), (end, high) in itertools.pairwise(points):
            if frame <= end:
                t = (frame - start) / (end - start)
                if self.smooth:
                    t = (1 - math.cos(math.pi * t)) / 2
                return low + (high - low) * t
        return points[-1][1]


def parse_keyframes(text: str, name: str = "the value", *, smooth: bool = False,
                    positive: bool = False) -> Keyframes:
    """``"1.02"`` or ``"0:1.0, 60:1.04"`` -> :class:`Keyframes`.

    Args:
        text: the setting as written.
        name: what it is, for messages (``--zoom``).
        smooth: ease in and out of every keyframe.
        positive: every value must be more than 0 (zoom).

    Raises:
        InputError: empty, a part that is not ``FRAME:VALUE``, a frame that is not a whole
            number or does not increase, a value that is not a finite number (or not positive).
    """
    text = str(text)
    if not text.strip():
        raise InputError(f"{name} is empty; give a number such as 1.02 or keyframes such as '0:1.0, 60:1.04'.")
    parts = text.split(",")
    if len(parts) == 1 and ":" not in text:
        points = [(0, _number(text, name, text))]
    else:
        points = []
        for part in parts:
            frame_text, colon, value_text = part.partition(":")
            if not colon or not part.strip():
                raise InputError(f"{name} {_show(text)} has the part {_show(part.strip())}, which is not FRAME:VALUE; "
                                 "write keyframes such as '0:1.0, 60:1.04'.")
            if not frame_text.strip().isdigit():
                raise InputError(f"{name} {_show(text)} has {_show(frame_text.strip())} where a frame number should "
                                 f"be (in {_show(part.strip())}); frames are whole numbers from 0, as in '0:1.0'.")
            frame = int(frame_text)
            if points and frame <= points[-1][0]:
                raise InputError(f"{name} {_show(text)} has frame {frame} after frame {points[-1][0]}; "
                                 "give the keyframes in increasing frame order.")
            points.append((frame, _number(value_text, name, text)))
    for frame, value in points:
        if not math.isfinite(value):
            raise InputError(f"{name} {_show(text)} has the value {value} at frame {frame}; use finite numbers.")
        if positive and value <= 0:
            raise InputError(f"{name} must be more than 0 at every frame, but {_show(text)} gives {value:g} at frame "
                             f"{frame}; 1 keeps the size, 1.02 zooms in, 0.98 zooms out.")
    return Keyframes(tuple(points), smooth)


@dataclass(frozen=True)
class Motion:
    """The motion of one frame: zoom (scale), angle (degrees, counter-clockwise) and shift (pixels)."""

    zoom: float = 1.0
    angle: float = 0.0
    translate_x: float = 0.0
    translate_y: float = 0.0

    @property
    def is_identity(self) -> bool:
        return (self.zoom, self.angle, self.translate_x, self.translate_y) == (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class MotionSchedule:
    """Keyframes of every motion setting."""

    zoom: Keyframes
    angle: Keyframes
    translate_x: Keyframes
    translate_y: Keyframes

    @classmethod
    def parse(cls, zoom: str, angle: str, translate_x: str, translate_y: str, *, smooth: bool = False
              ) -> MotionSchedule:
        """Parse the four settings (see :func:`parse_keyframes`)."""
        return cls(parse_keyframes(zoom, "--zoom", smooth=smooth, positive=True),
                   parse_keyframes(angle, "--angle", smooth=smooth),
                   parse_keyframes(translate_x, "--translate-x", smooth=smooth),
                   parse_keyframes(translate_y, "--translate-y", smooth=smooth))

    def at(self, frame: int) -> Motion:
        """The motion that makes ``frame`` from the frame before it."""
        return Motion(self.zoom.at(frame), self.angle.at(frame), self.translate_x.at(frame),
                      self.translate_y.at(frame))


@dataclass(frozen=True)
class PromptTimeline:
    """Which prompt text is in force at each frame: ``(first frame, prompt)`` in frame order."""

    entries: tuple[tuple[int, str], ...]

    def at(self, frame: int) -> str:
        """The prompt (prompt grammar, one phrase) in force at ``frame``."""
        text = self.entries[0][1]
        for start, prompt in self.entries:
            if start > frame:
                break
            text = prompt
        return text


def parse_prompt_at(entry: str) -> tuple[int, str]:
    """``"30=a forest"`` -> ``(30, "a forest")``.

    Raises:
        InputError: no leading ``FRAME=``, or nothing after it.
    """
    match = _FRAME_PROMPT.fullmatch(entry)
    if match is None:
        raise InputError(f"--prompt-at {_show(entry)} does not start with a frame number and '='; "
                         "write FRAME=PROMPT, such as --prompt-at '30=a forest'.")
    if not match[2].strip():
        raise InputError(f"--prompt-at {_show(entry)} has no prompt after '='; write FRAME=PROMPT, such as "
                         "--prompt-at '30=a forest'.")
    return int(match[1]), match[2].strip()


def prompt_timeline(prompts: str, prompt_at: Sequence[str], *, frames: int, change_every: int = 0) -> PromptTimeline:
    """The prompts in force frame by frame: a ``^`` story advancing every ``change_every``
    frames (0: split evenly), or ``prompts`` from frame 0 and each ``FRAME=PROMPT`` from its frame.

    Raises:
        InputError: bad prompt grammar, a story mixed with keyframed prompts, repeated or
            out-of-range frames, or no prompt in force at frame 0.
    """
    if prompt_at:
        if prompts.strip() and len(make_schedule(prompts, steps=1).phrases) > 1:
            raise InputError("give the story's phrases with '^' or keyframed prompts with --prompt-at, not both; "
                             "write each phrase as --prompt-at FRAME=PROMPT.")
        entries = [(0, prompts.strip())] if prompts.strip() else []
        for frame, text in sorted(map(parse_prompt_at, prompt_at), key=lambda pair: pair[0]):
            make_schedule(text, steps=1)  # the prompt grammar's own checks, '^' included
            if frame >= frames:
                raise InputError(f"--prompt-at {frame}={_show(text)} starts after the last frame ({frames - 1}); "
                                 "give a frame below --frames.")
            if entries and entries[-1][0] == frame:
                raise InputError(f"frame {frame} gets two prompts ({_show(entries[-1][1])} and {_show(text)}); "
                                 "give one prompt per frame, with '|' to combine them.")
            entries.append((frame, text))
        if not entries or entries[0][0] != 0:
            raise InputError("no prompt is in force at frame 0; give a prompt, or --prompt-at '0=PROMPT'.")
        return PromptTimeline(tuple(entries))
    if not prompts.strip():
        return PromptTimeline(((0, ""),))  # image or noise prompts only
    schedule = make_schedule(prompts, steps=frames, change_every=change_every)
    phrases = [" | ".join(str(prompt) for prompt in phrase) for phrase in schedule.phrases]
    return PromptTimeline(tuple((start, phrase) for start, phrase in zip(schedule.switch_steps(), phrases,
                                                                         strict=True)))
