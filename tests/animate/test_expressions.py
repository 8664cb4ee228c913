"""Keyframe expressions: their values at frames (time, frame number, audio features), numbers and
keyframes that keep their meaning, commas inside calls, and one sentence for anything hostile,
unknown or without a value."""

from __future__ import annotations

import builtins
import dataclasses
import math

import numpy as np
import pytest

from generator.animate.audio import FEATURES, AudioFeatures
from generator.animate.expressions import MAX_DEPTH, MAX_LENGTH, Expression, parse_expression
from generator.animate.keyframes import MotionSchedule, parse_keyframes
from generator.errors import InputError


def _sound(fps: float = 10.0, **columns: list[float]) -> AudioFeatures:
    """Features given frame by frame (missing ones are 0)."""
    frames = len(next(iter(columns.values())))
    values = {name: np.asarray(columns.get(name, [0.0] * frames), np.float32) for name in FEATURES}
    return AudioFeatures(fps, values)


def _one_sentence(error: pytest.ExceptionInfo) -> str:
    sentence = str(error.value)
    assert sentence.count(". ") == 0 and sentence.endswith(".") and "\n" not in sentence, sentence
    return sentence


def test_expressions_follow_time_frame_and_features_at_each_frame() -> None:
    schedule = MotionSchedule.parse("1 + 0.04*bass", "2*onset", "10*sin(t)", "frame - max(loudness, treble)/2")
    sound = _sound(fps=4, bass=[0, 0.25, 0.5, 1], onset=[0, 1, 0, 0.5], loudness=[0, 0.2, 0.4, 0.6],
                   treble=[0, 0.8, 0, 0])
    schedule = dataclasses.replace(schedule, fps=4.0, sound=sound)
    motions = [schedule.at(frame) for frame in range(4)]
    assert [m.zoom for m in motions] == pytest.approx([1.0, 1.01, 1.02, 1.04])
    assert [m.angle for m in motions] == pytest.approx([0.0, 2.0, 0.0, 1.0])
    assert [m.translate_x for m in motions] == pytest.approx([10 * math.sin(frame / 4) for frame in range(4)])
    assert [m.translate_y for m in motions] == pytest.approx([0.0, 0.6, 1.8, 2.7])
    assert schedule.features == ("loudness", "bass", "treble", "onset")
    assert schedule.features_at(1) == pytest.approx({"loudness": 0.2, "bass": 0.25, "mid": 0.0, "treble": 0.8,
                                                     "onset": 1.0})
    assert schedule.features_at(99) == dict.fromkeys(FEATURES, 0.0)  # after the sound: silence


def test_the_grammar_computes_like_arithmetic() -> None:
    def value(text: str, **names: float) -> float:
        return parse_expression(text).evaluate(names)

    assert value("1 + 2*3 - 4/8") == 6.5
    assert value("-2**2") == -4 and value("(-2)**2") == 4 and value("2**-1") == 0.5  # as in Python
    assert value("2 - -3") == 5 and value("+t", t=3) == 3
    assert value("clip(bass*3, 0, 1) + min(t, 2, frame) + max(1, bass) + abs(-0.5) + cos(0)", bass=0.5, t=5,
                 frame=1) == 1 + 1 + 1 + 0.5 + 1
    assert value("onset**0.5", onset=0.25) == 0.5 and value("1.5e1 + .5") == 15.5
    assert math.isnan(value("1/frame", frame=0)) and math.isnan(value("(t - 1)**0.5", t=0))


def test_numbers_and_keyframes_keep_their_meaning_and_a_function_s_commas_do_not_split() -> None:
    assert parse_keyframes("1.02").points == ((0, 1.02),)
    assert parse_keyframes("0:1.0, 60:1.04").points == ((0, 1.0), (60, 1.04))
    assert parse_keyframes("2*0.51").points == ((0, 1.02),)  # no names: a number
    whole = parse_keyframes("clip(bass, 0, 0.5)")
    assert len(whole.points) == 1 and isinstance(whole.points[0][1], Expression)
    keyed = parse_keyframes("0:1, 10: 1 + clip(bass, 0, 0.5), 20:3")
    assert [frame for frame, _ in keyed.points] == [0, 10, 20]
    # between keyframes both neighbours are evaluated at the frame and interpolated
    assert keyed.at(5, {"bass": 1.0}) == pytest.approx(1.25) and keyed.at(15, {"bass": 0.2}) == pytest.approx(2.1)


def test_eval_exec_and_compile_are_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, lambda *args, **kwargs: pytest.fail("an expression reached Python"))
    schedule = dataclasses.replace(MotionSchedule.parse("1 + 0.04*bass", "max(2*onset, t)", "0", "0"),
                                   sound=_sound(bass=[0, 0.5, 1], onset=[0, 0, 0.25]))
    assert (schedule.at(2).zoom, schedule.at(2).angle) == (pytest.approx(1.04), 0.5)
    assert parse_expression("1 + 0.04*bass").program == (("number", 1.0), ("number", 0.04), ("name", "bass"),
                                                        ("*", None), ("+", None))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "--zoom \"__import__('os')\" has a string (the quote \"'\" at character 12)"),
        ("__import__(x)", "has the unknown function '__import__'; the functions are sin, cos, abs, min, max and clip"),
        ("().__class__", "has '.' outside a number (at character 3, after '()'): attribute access is not part"),
        ("a.b", "has '.' outside a number (at character 2, after 'a'): attribute access"),
        ("bass.real", "attribute access is not part of expressions"),
        ("9**9**9", "raises a power to a power (in '9**9**9'); write one power with a number exponent from -8 to 8"),
        ("2**1000", "has the power '2**1000', whose exponent is more than 8 in size; write an exponent from -8 to 8"),
        ("bass**t", "has the power 'bass**t', whose exponent is not a number"),
        ("1+" * 5000 + "1", f"is 10001 characters long, more than the {MAX_LENGTH} an expression may have"),
        ("1 + 0.04*bas", "has the unknown name 'bas'; the names are t (seconds), frame, and the audio features "
                         "loudness, bass, mid, treble and onset"),
        ("fast", "has 'fast' where a number should be; write a number such as 1.02, keyframes such as "
                 "'0:1.0, 60:1.04', or an expression such as '1 + 0.04*bass' of t (seconds), frame and the audio "
                 "features loudness, bass, mid, treble, onset"),
        ("bass[0]", "has '[' (at character 5): subscripts, lists and the like are not part of expressions"),
        ("[x for x in t]", "subscripts, lists and the like"),
        ("lambda: 1", "where a frame number should be"),  # read as a keyframe FRAME:VALUE
        ("(lambda x: x)(1)", "has '(lambda x' where a frame number should be"),
        ("max(t, 1) % 2", "has '%' (at character 11), which is not part of an expression"),
        ("-" * (MAX_DEPTH + 1) + "1", f"nests parentheses, calls and signs more than {MAX_DEPTH} deep"),
        ("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1), "more than 32 deep"),
        ("clip(bass, 0)", "gives clip 2 values where it takes 3; write it as 'clip(x, lo, hi)'"),
        ("sin", "has the function 'sin' without its values; write it with parentheses, as in 'sin(x)'"),
        ("bass(2)", "calls 'bass', which is a name, not a function"),
        ("2bass", "has 'bass' after '2', where an operator should be"),
        ("(1 + bass", "has a '(' (at character 1) that is not closed"),
        ("1 + bass)", "has a ')' that closes no '(' (after '1 + bass')"),
        ("1 +", "ends where a number, a name or '(' should follow"),
        ("1e999", "has the value inf at frame 0; use finite numbers"),  # a number, as before expressions
        ("1 + 1e999", "has the number '1e999', which is too large"),
        ("1/0", "has '1/0', which is not a finite number (a division by zero or an overflow)"),
        ("0:1, 10:1 + os.system", "has '.' outside a number"),
    ],
)
def test_hostile_or_malformed_expressions_get_one_sentence(text: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_keyframes(text, "--zoom", positive=True)
    sentence = _one_sentence(raised)
    assert sentence.startswith("--zoom ") and message in sentence, sentence


def test_a_value_without_a_number_at_a_frame_is_refused_before_the_first_frame_naming_setting_and_frame() -> None:
    with pytest.raises(InputError) as raised:
        MotionSchedule.parse("1", "0", "0", "1/(frame - 3)").for_frames(10, fps=10)
    assert _one_sentence(raised) == (
        "--translate-y '1/(frame - 3)' is not a finite number at frame 3 (a division by zero or an overflow); change "
        "it so that it is a number at every frame, for example with max(x, 0.01) or clip(x, lo, hi).")
    with pytest.raises(InputError) as raised:
        MotionSchedule.parse("1.1 - t", "0", "0", "0").for_frames(20, fps=10)
    assert _one_sentence(raised) == ("--zoom must be more than 0 at every frame, but '1.1 - t' gives 0 at frame 11; "
                                     "1 keeps the size, 1.02 zooms in, 0.98 zooms out.")
    assert MotionSchedule.parse("1.1 - t", "0", "0", "0").for_frames(11, fps=10).at(10).zoom == pytest.approx(0.1)
    with pytest.raises(InputError) as raised:  # frames past the end are checked too, with the sound's zeros
        dataclasses.replace(MotionSchedule.parse("1/bass", "0", "0", "0"), sound=_sound(bass=[1, 1])).at(2)
    assert "at frame 2" in _one_sentence(raised)


def test_features_without_sound_ask_for_audio() -> None:
    schedule = MotionSchedule.parse("1", "0:0, 10:2*onset", "0", "0")
    with pytest.raises(InputError) as raised:
        schedule.for_frames(12, fps=10)
    assert _one_sentence(raised) == ("--angle '0:0, 10:2*onset' uses the audio feature 'onset', but there is no sound "
                                     "to follow; pass --audio FILE (or restyle a video that has sound).")
    timed = MotionSchedule.parse("1", "0", "t", "frame").for_frames(12, fps=4)  # time alone needs no sound
    assert (timed.at(6).translate_x, timed.at(6).translate_y) == (1.5, 6.0) and timed.features_at(6) == {}
    assert MotionSchedule.parse("1", "0", "t", "0").for_frames(12, fps=25, video_length=3).at(6).translate_x == 1.5
