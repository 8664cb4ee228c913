r"""Prompt tails with numbers inside the text, as the grammar at the top of
generator/text_to_image/prompts.py documents them: weight and stop are read only from the end and only
when they parse as numbers; a trailing number is a weight (``16:9`` is ``16`` at weight 9);
``\:`` keeps a colon in the text."""

from __future__ import annotations

import math

import pytest

from generator.text_to_image.prompts import WeightedPrompt, parse_prompts, parse_story

INF = math.inf


@pytest.mark.parametrize(("entry", "text", "weight", "stop"), [
    # a non-number last part: nothing is a weight, the whole entry is text
    ("ratio 4:3:wide", "ratio 4:3:wide", 1.0, -INF),
    ("16:9:wide", "16:9:wide", 1.0, -INF),
    ("a:1:b", "a:1:b", 1.0, -INF),
    ("ratio 4 : 3 : wide ", "ratio 4 : 3 : wide", 1.0, -INF),
    # ... and a weight after it is still read
    ("ratio 4:3:wide:2", "ratio 4:3:wide", 2.0, -INF),
    ("a:1:b:2", "a:1:b", 2.0, -INF),
    ("ratio 4:3:wide:2:0.5", "ratio 4:3:wide", 2.0, 0.5),
    # trailing numbers are weight then stop, even when they were meant as text (the gotcha)
    ("ratio 4:3", "ratio 4", 3.0, -INF),
    ("4:3:2", "4", 3.0, 2.0),
    ("time 12:30:45", "time 12", 30.0, 45.0),
    ("version 2:1:0.5:3", "version 2:1", 0.5, 3.0),
    # escaped colons keep numbers in the text, with or without a tail
    ("16\\:9", "16:9", 1.0, -INF),
    ("16\\:9:2", "16:9", 2.0, -INF),
    ("16\\:9:2:0.1", "16:9", 2.0, 0.1),
    ("ratio 4\\:3:wide", "ratio 4:3:wide", 1.0, -INF),
    ("4\\:3\\:2", "4:3:2", 1.0, -INF),
    ("a\\:1\\:0.5", "a:1:0.5", 1.0, -INF),
    ("a\\:1:0.5", "a:1", 0.5, -INF),
    # numbers in the middle of the text are text
    ("a 4:3 photo:2:0.5", "a 4:3 photo", 2.0, 0.5),
    ("4:3 photo", "4:3 photo", 1.0, -INF),
    ("a:-1:-0.5", "a", -1.0, -0.5),
    ("a:1e1:1E-1", "a", 10.0, 0.1),
])
def test_tails_with_numbers_in_the_text(entry: str, text: str, weight: float, stop: float) -> None:
    (prompt,) = parse_prompts(entry)
    assert (prompt.text, prompt.weight, prompt.stop) == (text, weight, stop)
    assert parse_prompts(str(prompt)) == (prompt,)  # and it is written back in the same grammar


def test_tails_inside_lists_and_stories() -> None:
    story = parse_story("ratio 4:3:wide | 16\\:9:2 ^ a:1:b:0.5 | time 12:30:45")
    assert [[(p.text, p.weight, p.stop) for p in phrase] for phrase in story] == [
        [("ratio 4:3:wide", 1.0, -INF), ("16:9", 2.0, -INF)],
        [("a:1:b", 0.5, -INF), ("time 12", 30.0, 45.0)],
    ]


@pytest.mark.parametrize("text", ["ratio 4:3", "4:3:2", "time 12:30:45", "16:9", "a:1:0.5", "ratio 4:3:wide:2"])
def test_texts_that_end_in_numbers_are_escaped_when_written(text: str) -> None:
    for weight, stop in ((1.0, -INF), (2.0, -INF), (2.0, 0.25)):
        prompt = WeightedPrompt(text, weight, stop)
        assert parse_prompts(str(prompt)) == (prompt,), str(prompt)
