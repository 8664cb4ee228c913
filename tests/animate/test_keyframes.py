"""Keyframe strings: values at, between, before and after keyframes; prompts at frames; and
one sentence that quotes the bad part of a malformed string."""

from __future__ import annotations

import pytest

from generator.animate.keyframes import MotionSchedule, parse_keyframes, prompt_timeline
from generator.errors import InputError


def test_values_at_between_and_after_keyframes() -> None:
    zoom = parse_keyframes("10:1.0, 60:1.04, 120: 1.0", "--zoom")
    assert [zoom.at(frame) for frame in (0, 10, 60, 120, 500)] == [1.0, 1.0, 1.04, 1.0, 1.0]  # held outside
    assert zoom.at(35) == pytest.approx(1.02)  # halfway between 10 and 60
    assert zoom.at(90) == pytest.approx(1.02)
    assert zoom.at(20) == pytest.approx(1.0 + 0.04 * 10 / 50)
    assert parse_keyframes("1.02").at(0) == parse_keyframes("1.02").at(999) == 1.02  # a constant
    assert parse_keyframes("-3").at(7) == -3.0


def test_smooth_keyframes_ease_in_and_out() -> None:
    smooth = parse_keyframes("0:0, 10:10", smooth=True)
    assert smooth.at(0) == 0 and smooth.at(10) == 10 and smooth.at(5) == pytest.approx(5)
    assert smooth.at(1) == pytest.approx(5 * (1 - 0.9510565163)) and smooth.at(1) < 1  # slow start
    assert smooth.at(9) > 9  # slow end


def test_motion_schedule_gives_each_setting_per_frame() -> None:
    schedule = MotionSchedule.parse("0:1, 4:2", "90", "0:0, 2:-4", "3")
    motion = schedule.at(2)
    assert (motion.zoom, motion.angle, motion.translate_x, motion.translate_y) == (1.5, 90.0, -4.0, 3.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--zoom is empty"),
        ("fast", "has 'fast' where a number should be"),
        ("0:1.0, x:1.04", "has 'x' where a frame number should be (in 'x:1.04')"),
        ("0:1.0, 60", "has the part '60', which is not FRAME:VALUE"),
        ("0:1.0,, 60:2", "has the part '', which is not FRAME:VALUE"),
        ("0:1.0, 60:big", "has 'big' where a number should be"),
        ("60:1.0, 30:1.04", "has frame 30 after frame 60; give the keyframes in increasing frame order"),
        ("-1:1.0", "where a frame number should be"),
        ("0:1.0, 60:0", "must be more than 0 at every frame, but '0:1.0, 60:0' gives 0 at frame 60"),
        ("-0.5", "must be more than 0 at every frame"),
    ],
)
def test_malformed_keyframes_get_one_sentence_pointing_at_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_keyframes(text, "--zoom", positive=True)
    sentence = str(raised.value)
    assert message in sentence and sentence.count(". ") == 0 and sentence.endswith(".")


def test_prompts_change_at_their_frames_and_keep_colons_and_urls() -> None:
    timeline = prompt_timeline("a forest:2", ["30=a burning forest | smoke:-0.5", "10=http://host:8080/a.png"],
                               frames=60)
    assert [timeline.at(frame) for frame in (0, 9, 10, 29, 30, 59)] == [
        "a forest:2", "a forest:2", "http://host:8080/a.png", "http://host:8080/a.png",
        "a burning forest | smoke:-0.5", "a burning forest | smoke:-0.5"]


def test_a_story_advances_every_n_frames_or_splits_the_frames() -> None:
    story = prompt_timeline("a ^ b ^ c", [], frames=9, change_every=2)
    assert [story.at(frame) for frame in range(9)] == ["a", "a", "b", "b", "c", "c", "c", "c", "c"]
    even = prompt_timeline("a ^ b ^ c", [], frames=9)
    assert [even.at(frame) for frame in range(9)] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3


@pytest.mark.parametrize(
    ("prompts", "prompt_at", "message"),
    [
        ("a cat", ["a forest"], "--prompt-at 'a forest' does not start with a frame number and '='"),
        ("a cat", ["30="], "--prompt-at '30=' has no prompt after '='"),
        ("a cat", ["90=a forest"], "starts after the last frame (59)"),
        ("a cat", ["5=a", "5=b"], "frame 5 gets two prompts"),
        ("a ^ b", ["5=a forest"], "not both"),
        ("", ["5=a forest"], "no prompt is in force at frame 0"),
        ("a cat", ["5=a | "], "entry 2 of 2"),
    ],
)
def test_malformed_prompt_keyframes_are_refused(prompts: str, prompt_at: list[str], message: str) -> None:
    with pytest.raises(InputError, match=None) as raised:
        prompt_timeline(prompts, prompt_at, frames=60)
    assert message in str(raised.value)
