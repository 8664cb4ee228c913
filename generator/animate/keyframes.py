r"""Keyframes: per-frame values of the motion settings, and prompts that change at frames.

Numbers. A motion setting is a constant (``1.02``) or keyframes ``FRAME:VALUE`` separated by
commas (``0:1.0, 60:1.04, 120:1.0``), the colon form of the prompt grammar's ``text:weight``.
Between keyframes the value is interpolated linearly, or with ``smooth`` eased in and out of
every keyframe (half a cosine); before the first keyframe the first value holds, after the
last the last. Frames must increase.

Expressions. The whole setting, or a keyframe's VALUE, may be an arithmetic expression over
``t`` (seconds), ``frame`` and the audio features ``loudness``, ``bass``, ``mid``, ``treble`` and
``onset`` (``--zoom "1 + 0.04*bass"``, ``--angle "0:0, 30:2*onset"``; the grammar is
:mod:`generator.animate.expressions`). Only commas outside parentheses separate keyframes, so
``clip(bass, 0, 0.5)`` is one value. An expression is evaluated at every frame with that
frame's time and features (:meth:`MotionSchedule.for_frames` binds the frame rate and the
sound); between keyframes both neighbours are evaluated at the frame and interpolated. An
expression without names (``2*0.5``) is a number. A value that is not a finite number at a
frame, or a zoom that is not more than 0, is refused before the first frame is made.

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

import dataclasses
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from generator.animate.audio import AudioFeatures, audio_features
from generator.animate.expressions import FEATURES, FUNCTIONS, NAMES, Expression, parse_expression
from generator.errors import InputError
from generator.text_to_image.prompts import make_schedule

_FRAME_PROMPT = re.compile(r"\s*(\d+)\s*=(.*)", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


_WORD = re.compile(r"[A-Za-z_]\w*", re.ASCII)


def _value(text: str, name: str, whole: str) -> float | Expression:
    """A number, or an expression (a number when it has no names)."""
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        return float(stripped)
    if not stripped or (_WORD.fullmatch(stripped) and stripped not in NAMES and stripped not in FUNCTIONS):
        raise InputError(f"{name} {_show(whole)} has {_show(stripped)} where a number should be; write a number "
                         "such as 1.02, keyframes such as '0:1.0, 60:1.04', or an expression such as "
                         f"'1 + 0.04*bass' of t (seconds), frame and the audio features {', '.join(FEATURES)}.")
    expression = parse_expression(stripped, name, whole)
    if expression.names:
        return expression
    value = expression.evaluate({})
    if not math.isfinite(value):
        raise InputError(f"{name} {_show(whole)} has {_show(stripped)}, which is not a finite number (a division by "
                         "zero or an overflow); write a value that is a number.")
    return value


def _top_level_parts(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses (a function's commas stay)."""
    parts, depth, start = [], 0, 0
    for index, character in enumerate(text):
        depth += {"(": 1, ")": -1}.get(character, 0)
        if character == "," and depth <= 0:
            parts.append(text[start:index])
            start = index + 1
    return [*parts, text[start:]]


@dataclass(frozen=True)
class Keyframes:
    """A value per frame: ``(frame, value)`` pairs with increasing frames.

    Attributes:
        points: the keyframes, each value a number or an :class:`Expression`; one point at
            frame 0 is a constant.
        smooth: ease in and out of every keyframe instead of straight lines.
        text: the setting as written (for messages).
    """

    points: tuple[tuple[int, float | Expression], ...]
    smooth: bool = False
    text: str = field(default="", compare=False)

    @property
    def names(self) -> frozenset[str]:
        """The names its expressions use (none: numbers only)."""
        return frozenset().union(*(value.names for _, value in self.points if isinstance(value, Expression)))

    def at(self, frame: int, values: Mapping[str, float] | None = None) -> float:
        """The value at ``frame``: held before the first keyframe and after the last. Expressions
        are evaluated with ``values`` of their names (NaN where they have no value).

        Raises:
            KeyError: an expression's name is not in ``values``.
        """
        points = self.points
        if frame <= points[0][0]:
            return _evaluate(points[0][1], values)
        for (start, low), (end, high) in itertools.pairwise(points):
            if frame <= end:
                t = (frame - start) / (end - start)
                if self.smooth:
                    t = (1 - math.cos(math.pi * t)) / 2
                low, high = _evaluate(low, values), _evaluate(high, values)
                return low + (high - low) * t
        return _evaluate(points[-1][1], values)


def _evaluate(value: float | Expression, values: Mapping[str, float] | None) -> float:
    return value.evaluate(values or {}) if isinstance(value, Expression) else value


def parse_keyframes(text: str, name: str = "the value", *, smooth: bool = False,
                    positive: bool = False) -> Keyframes:
    """``"1.02"``, ``"0:1.0, 60:1.04"``, ``"1 + 0.04*bass"`` or ``"0:1, 30:1 + 0.1*onset"`` -> :class:`Keyframes`.

    Args:
        text: the setting as written.
        name: what it is, for messages (``--zoom``).
        smooth: ease in and out of every keyframe.
        positive: every value must be more than 0 (zoom; an expression's values are checked
            frame by frame, by :class:`MotionSchedule`).

    Raises:
        InputError: empty, a part that is not ``FRAME:VALUE``, a frame that is not a whole
            number or does not increase, a value that is neither a finite number nor an
            expression (see :mod:`generator.animate.expressions`), or not positive.
    """
    text = str(text)
    if not text.strip():
        raise InputError(f"{name} is empty; give a number such as 1.02 or keyframes such as '0:1.0, 60:1.04'.")
    parts = _top_level_parts(text)
    points: list[tuple[int, float | Expression]]
    if len(parts) == 1 and ":" not in text:
        points = [(0, _value(text, name, text))]
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
            points.append((frame, _value(value_text, name, text)))
    for frame, value in points:
        if isinstance(value, Expression):
            continue
        if not math.isfinite(value):
            raise InputError(f"{name} {_show(text)} has the value {value} at frame {frame}; use finite numbers.")
        if positive and value <= 0:
            raise InputError(f"{name} must be more than 0 at every frame, but {_show(text)} gives {value:g} at frame "
                             f"{frame}; 1 keeps the size, 1.02 zooms in, 0.98 zooms out.")
    return Keyframes(tuple(points), smooth, text)


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


FLAGS = {"zoom": "--zoom", "angle": "--angle", "translate_x": "--translate-x", "translate_y": "--translate-y"}
"""Each motion setting's flag, for messages."""


@dataclass(frozen=True)
class MotionSchedule:
    """Keyframes of every motion setting, and what their expressions read at each frame.

    Attributes:
        zoom, angle, translate_x, translate_y: the settings' keyframes.
        fps: frames per second of the video, for ``t`` (seconds) = frame / fps.
        sound: the audio features of every frame (None: no sound; see :meth:`for_frames`).
    """

    zoom: Keyframes
    angle: Keyframes
    translate_x: Keyframes
    translate_y: Keyframes
    fps: float = 10.0
    sound: AudioFeatures | None = None

    @classmethod
    def parse(cls, zoom: str, angle: str, translate_x: str, translate_y: str, *, smooth: bool = False
              ) -> MotionSchedule:
        """Parse the four settings (see :func:`parse_keyframes`); :meth:`for_frames` then binds
        the frame rate and the sound that their expressions follow."""
        return cls(parse_keyframes(zoom, "--zoom", smooth=smooth, positive=True),
                   parse_keyframes(angle, "--angle", smooth=smooth),
                   parse_keyframes(translate_x, "--translate-x", smooth=smooth),
                   parse_keyframes(translate_y, "--translate-y", smooth=smooth))

    @property
    def features(self) -> tuple[str, ...]:
        """The audio features the settings' expressions use, in :data:`FEATURES` order."""
        used = frozenset().union(*(getattr(self, name).names for name in FLAGS))
        return tuple(name for name in FEATURES if name in used)

    def check_sound(self, available: bool) -> None:
        """Refuse settings that follow the sound when there is none (``available`` false).

        Raises:
            InputError: an expression uses an audio feature and there is no sound.
        """
        if available or not self.features:
            return
        setting = next(name for name in FLAGS if set(getattr(self, name).names) & set(FEATURES))
        keyframes = getattr(self, setting)
        feature = next(name for name in FEATURES if name in keyframes.names)
        raise InputError(f"{FLAGS[setting]} {_show(keyframes.text)} uses the audio feature {feature!r}, but there is "
                         "no sound to follow; pass --audio FILE (or restyle a video that has sound).")

    def for_frames(self, frames: int, *, fps: float, audio: str | Path | None = None, video_length: float = 0.0
                   ) -> MotionSchedule:
        """This schedule for a video of ``frames`` frames at ``fps`` (or lasting ``video_length``
        seconds, when that is not 0) whose expressions follow the sound of ``audio`` (a sound
        file or a video with sound; None: no sound), checked at every frame that is moved
        (1 on), so that a bad value stops the run before its first frame.

        Raises:
            InputError: an expression uses an audio feature without ``audio``; ``audio``
                cannot be decoded or has no sound; a value is not a finite number at a frame,
                or a zoom not more than 0.
        """
        self.check_sound(audio is not None)
        if video_length:
            fps = frames / video_length
        sound = audio_features(audio, fps=fps, frames=frames) if audio is not None else None
        schedule = dataclasses.replace(self, fps=float(fps), sound=sound)
        if any(getattr(self, name).names for name in FLAGS):
            for frame in range(1, frames):
                schedule.at(frame)
        return schedule

    def features_at(self, frame: int) -> dict[str, float]:
        """The audio features at ``frame`` (:data:`FEATURES`, each 0 to 1; an empty dict
        without sound): the values the expressions read there, for the frame's record."""
        return self.sound.at(frame) if self.sound is not None else {}

    def values_at(self, frame: int) -> dict[str, float]:
        """What an expression's names are at ``frame``: ``t``, ``frame`` and the audio features."""
        return {"t": frame / self.fps, "frame": float(frame), **self.features_at(frame)}

    def at(self, frame: int) -> Motion:
        """The motion that makes ``frame`` from the frame before it.

        Raises:
            InputError: a setting's expression is not a finite number at ``frame`` (or the zoom
                not more than 0), or follows the sound without one.
        """
        values = self.values_at(frame)
        numbers = []
        for name, flag in FLAGS.items():
            keyframes: Keyframes = getattr(self, name)
            if not keyframes.names:
                numbers.append(keyframes.at(frame))
                continue
            if self.sound is None:
                self.check_sound(False)
            value = keyframes.at(frame, values)
            if not math.isfinite(value):
                raise InputError(f"{flag} {_show(keyframes.text)} is not a finite number at frame {frame} (a division "
                                 "by zero or an overflow); change it so that it is a number at every frame, for "
                                 "example with max(x, 0.01) or clip(x, lo, hi).")
            if name == "zoom" and value <= 0:
                raise InputError(f"{flag} must be more than 0 at every frame, but {_show(keyframes.text)} gives "
                                 f"{value:g} at frame {frame}; 1 keeps the size, 1.02 zooms in, 0.98 zooms out.")
            numbers.append(value)
        return Motion(*numbers)


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
