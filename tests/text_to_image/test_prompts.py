"""The prompt grammar (generator/prompts.py): colon-safe weights, escapes, stories, schedules."""

from __future__ import annotations

import logging
import math
import random

import pytest

from generator.errors import InputError
from generator.text_to_image.prompts import (
    NoisePrompt,
    PromptSchedule,
    WeightedPrompt,
    make_schedule,
    parse_image_prompts,
    parse_noise_prompts,
    parse_prompts,
    parse_story,
)

INF = math.inf


def _triples(prompts: tuple[WeightedPrompt, ...]) -> list[tuple[str, float, float]]:
    return [(p.text, p.weight, p.stop) for p in prompts]


def _one_sentence(message: str) -> None:
    assert "\n" not in message
    assert message.endswith(".")
    assert message[0].islower() or message[0].isdigit()


# --- entries ------------------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "text", "weight", "stop"), [
    ("a cat", "a cat", 1.0, -INF),
    ("  a cat  ", "a cat", 1.0, -INF),
    ("a cat:0.5", "a cat", 0.5, -INF),
    ("a cat : 2 ", "a cat", 2.0, -INF),
    ("a cat:-1", "a cat", -1.0, -INF),
    ("a cat:+1.5e-1", "a cat", 0.15, -INF),
    ("a:1:0.5", "a", 1.0, 0.5),
    ("a:-1:-inf", "a", -1.0, -INF),
    ("a:2:-0.25", "a", 2.0, -0.25),
    # colons inside the text survive
    ("a photo: sunset", "a photo: sunset", 1.0, -INF),
    ("a photo: sunset:3", "a photo: sunset", 3.0, -INF),
    ("a:b:c", "a:b:c", 1.0, -INF),
    ("a:b:2", "a:b", 2.0, -INF),
    ("a:1:b", "a:1:b", 1.0, -INF),  # a stop that is not a number makes it all text
    ("a:", "a:", 1.0, -INF),
    # URLs
    ("https://x.org/a.png", "https://x.org/a.png", 1.0, -INF),
    ("https://x.org/a.png:0.5", "https://x.org/a.png", 0.5, -INF),
    ("http://host:8080/a.png", "http://host:8080/a.png", 1.0, -INF),
    ("http://host:8080/a.png:0.5", "http://host:8080/a.png", 0.5, -INF),
    ("http://host:8080/a.png:0.5:0.1", "http://host:8080/a.png", 0.5, 0.1),
    ("http://host:8080/", "http://host:8080/", 1.0, -INF),
    # a bare port IS a weight (documented); escape it to keep it
    ("http://host:8080", "http://host", 8080.0, -INF),
    ("http://host\\:8080", "http://host:8080", 1.0, -INF),
    # Windows paths: backslashes before ordinary characters are kept
    ("C:\\images\\cat.png", "C:\\images\\cat.png", 1.0, -INF),
    ("C:\\images\\cat.png:2", "C:\\images\\cat.png", 2.0, -INF),
    ("C:\\images\\cat.png:2:0.5", "C:\\images\\cat.png", 2.0, 0.5),
    ("D:\\1\\2", "D:\\1\\2", 1.0, -INF),
    # numbers in text
    ("ratio 16:9 widescreen", "ratio 16:9 widescreen", 1.0, -INF),
    ("16:9", "16", 9.0, -INF),  # documented gotcha: a trailing number is a weight
    ("16\\:9", "16:9", 1.0, -INF),
    ("clock at 12\\:30", "clock at 12:30", 1.0, -INF),
    ("clock at 12\\:30:2", "clock at 12:30", 2.0, -INF),
    ("1984", "1984", 1.0, -INF),
    ("3.5:2", "3.5", 2.0, -INF),
    # escapes
    ("a \\| b", "a | b", 1.0, -INF),
    ("up \\^ down", "up ^ down", 1.0, -INF),
    ("back\\slash", "back\\slash", 1.0, -INF),
    ("trailing\\", "trailing\\", 1.0, -INF),
    ("dir\\ :2", "dir\\", 2.0, -INF),
    # unicode
    ("猫の写真:0.7", "猫の写真", 0.7, -INF),
    ("café ☕ : 1e1 : -1E-1", "café ☕", 10.0, -0.1),
])
def test_parse_prompt(entry: str, text: str, weight: float, stop: float) -> None:
    assert _triples(parse_prompts(entry)) == [(text, weight, stop)]


def test_nerdyrodent_rsplit_cases_differ() -> None:
    """The inputs that rsplit(':', 2) mangles come out whole here."""
    for entry in ("C:\\images\\cat.png", "a photo: sunset", "https://x.org/a.png", "a:b:c"):
        assert _single(entry).text == entry
        assert entry.rsplit(":", 2)[0] != entry  # what nerdyrodent would have taken as text


@pytest.mark.parametrize(("entry", "message"), [
    ("a:0", "weight 0"),
    ("a:-0.0:1", "weight 0"),
    ("a:inf", "infinite weight"),
    ("a:-inf", "infinite weight"),
    ("a:nan", "not a number"),
    ("a:1:nan", "stop nan"),
    ("a:1:inf", "stop inf"),
    (":0.5", "no text before its weight"),
    ("  :1:2", "no text before its weight"),
    ("", "the prompt is empty"),
    ("   ", "the prompt is empty"),
])
def test_parse_prompt_errors(entry: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_prompts(entry)
    _one_sentence(str(info.value))
    assert isinstance(info.value, ValueError)


def test_empty_prompt_message_is_exact() -> None:
    with pytest.raises(InputError) as info:
        parse_prompts(" \t ")
    assert str(info.value) == ("the prompt is empty; give some text to draw, an image prompt "
                               "or a noise prompt.")


# --- phrases and stories --------------------------------------------------------------------

def test_parse_prompts_splits_on_unescaped_bars() -> None:
    got = parse_prompts(" a forest:1 |smoke:-0.5| fire \\| ice : 2 : 0.1 ")
    assert _triples(got) == [("a forest", 1.0, -INF), ("smoke", -0.5, -INF),
                             ("fire | ice", 2.0, 0.1)]


@pytest.mark.parametrize(("text", "message"), [
    ("a || b", r"entry 2 of 3 .* is empty"),
    ("a | | b", r"entry 2 of 3 .* is empty"),
    ("a | b |", r"entry 3 of 3 .* is empty"),
    ("| a", r"entry 1 of 2 .* is empty"),
    ("a ^ b", r"story separator"),
    ("a | b:0", r"'b' has weight 0"),
])
def test_parse_prompts_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_prompts(text)
    _one_sentence(str(info.value))


def test_parse_story() -> None:
    story = parse_story("a forest ^ a burning forest:1 | smoke:-0.5 ^ ashes")
    assert [_triples(phrase) for phrase in story] == [
        [("a forest", 1.0, -INF)],
        [("a burning forest", 1.0, -INF), ("smoke", -0.5, -INF)],
        [("ashes", 1.0, -INF)],
    ]
    assert parse_story("just one | two") == (parse_prompts("just one | two"),)
    assert _triples(parse_story("x \\^ y ^ z")[0]) == [("x ^ y", 1.0, -INF)]


@pytest.mark.parametrize(("text", "message"), [
    ("a ^ ^ b", r"phrase 2 of 3 .* is empty"),
    ("a ^", r"phrase 2 of 2 .* is empty"),
    ("^ a", r"phrase 1 of 2 .* is empty"),
    ("a ^ b || c", r"entry 2 of 3 in phrase 2 of the story"),
    ("", r"the prompt is empty"),
])
def test_parse_story_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_story(text)
    _one_sentence(str(info.value))


# --- rendering and round trips -------------------------------------------------------------

@pytest.mark.parametrize(("prompt", "rendered"), [
    (WeightedPrompt("a cat"), "a cat"),
    (WeightedPrompt("a cat", 0.5), "a cat:0.5"),
    (WeightedPrompt("a cat", -2.0, 0.25), "a cat:-2:0.25"),
    (WeightedPrompt("16:9"), "16\\:9"),
    (WeightedPrompt("a photo: sunset"), "a photo: sunset"),
    (WeightedPrompt("a | b ^ c"), "a \\| b \\^ c"),
    (WeightedPrompt("dir\\", 2.0), "dir\\ :2"),
])
def test_str_renders_grammar(prompt: WeightedPrompt, rendered: str) -> None:
    assert str(prompt) == rendered
    assert _single(rendered) == prompt


TRICKY_TEXTS = [
    "a cat", "16:9", "a:1:2", "a:b", "a:", ":", "x:inf", "x:nan", "12:30", "1",
    "http://host:8080", "http://host:8080/a.png", "https://x.org/a.png", "C:\\images\\cat.png",
    "C:\\dir\\", "\\", "\\\\", "\\:", "a\\:1", "a\\|b", "|", "^", "a | b", "x ^ y", ":-1:-inf",
    "a\\", "猫:2", "café ☕", "e", "1e5:1e5", "a: 1 ", "\\^x", "x\\^",
]
WEIGHTS = [(1.0, -INF), (0.5, -INF), (-1.0, -INF), (2.0, 0.1), (1.0, -3.0), (1e-7, -INF),
           (123456.789, 1e20)]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_round_trip_tricky(text: str) -> None:
    for weight, stop in WEIGHTS:
        prompt = WeightedPrompt(text, weight, stop)
        assert parse_prompts(str(prompt)) == (prompt,), str(prompt)


def test_round_trip_random_stories() -> None:
    rng = random.Random(1234)
    pieces = ["a", "b", " ", ":", "|", "^", "\\", "0", "1", ".", "-", "e", "inf", "nan", "é",
              "猫", "/", "5", "+", "C:\\", "://"]
    for _ in range(400):
        story = []
        for _ in range(rng.randint(1, 3)):
            phrase = []
            for _ in range(rng.randint(1, 3)):
                text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
                if not text.strip():
                    text += "x"
                weight, stop = rng.choice(WEIGHTS)
                phrase.append(WeightedPrompt(text, weight * rng.choice([1, -1]), stop))
            story.append(tuple(phrase))
        rendered = _render(story)
        assert parse_story(rendered) == tuple(story), rendered
        for prompt in story[0]:
            assert _single(str(prompt)) == prompt, str(prompt)


def test_weighted_prompt_validates_and_strips() -> None:
    assert WeightedPrompt("  a  ", 2).text == "a"
    assert WeightedPrompt("a", 2).weight == 2.0
    for bad in ({"text": " "}, {"text": "a", "weight": 0}, {"text": "a", "weight": INF},
                {"text": "a", "stop": math.nan}, {"text": "a", "stop": INF}):
        with pytest.raises(InputError):
            WeightedPrompt(**bad)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        WeightedPrompt("a").text = "b"  # type: ignore[misc]


def _single(entry: str) -> WeightedPrompt:
    """The one prompt an entry parses to."""
    (prompt,) = parse_prompts(entry)
    return prompt


def _render(phrases) -> str:
    """Phrases written back in prompt grammar (``str`` of each prompt)."""
    return " ^ ".join(" | ".join(str(prompt) for prompt in phrase) for phrase in phrases)


# --- image prompts --------------------------------------------------------------------------

def test_image_prompts_check_existence(tmp_path) -> None:
    first = tmp_path / "a b.png"
    second = tmp_path / "x:1.png"  # a colon in the name, number-like after it
    for path in (first, second):
        path.write_bytes(b"not really an image; never opened")
    text = f"{first}:0.5 | {str(second).replace(':', chr(92) + ':')}:2:0.1"
    got = parse_image_prompts(text)
    assert _triples(got) == [(str(first), 0.5, -INF), (str(second), 2.0, 0.1)]
    assert parse_image_prompts(_render([got])) == got


def test_image_prompt_missing_file(tmp_path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(InputError) as info:
        parse_image_prompts(f"{missing}:0.5")
    assert str(info.value) == f"image prompt file {missing} does not exist; check the path."


def test_image_prompt_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="is not a file"):
        parse_image_prompts(str(tmp_path))
    with pytest.raises(InputError, match="image prompt is empty"):
        parse_image_prompts("  ")
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(InputError, match="entry 2 of 2"):
        parse_image_prompts(f"{tmp_path / 'a.png'} |")


def test_image_prompt_expands_home(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "a.png").write_bytes(b"")
    assert parse_image_prompts("~/a.png:3")[0] == WeightedPrompt(str(tmp_path / "a.png"), 3.0)


# --- noise prompts --------------------------------------------------------------------------

def test_noise_prompts() -> None:
    got = parse_noise_prompts(" 42:0.5 | 7 |0:-1 | +3 : 2e0 ")
    assert got == (NoisePrompt(42, 0.5), NoisePrompt(7), NoisePrompt(0, -1.0), NoisePrompt(3, 2.0))
    assert [str(p) for p in got] == ["42:0.5", "7", "0:-1", "3:2"]
    assert parse_noise_prompts(" | ".join(map(str, got))) == got


@pytest.mark.parametrize(("text", "message"), [
    ("", "noise prompt is empty"),
    ("-1", "does not start with a seed"),
    ("1.5", "does not start with a seed"),
    ("abc:1", "does not start with a seed"),
    ("1:x", "is not a number"),
    ("1:0", "weight 0"),
    ("1:inf", "infinite weight"),
    ("1:2:3", "too many ':' parts"),
    ("1 || 2", "entry 2 of 3"),
    (str(2**64), "2\\*\\*64-1"),
])
def test_noise_prompt_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_noise_prompts(text)
    _one_sentence(str(info.value))


# --- schedules ------------------------------------------------------------------------------

def _indices(schedule: PromptSchedule, steps: int) -> list[int]:
    return [schedule.phrase_index(step) for step in range(steps)]


def test_even_split_schedule() -> None:
    schedule = make_schedule("a ^ b ^ c", steps=20)
    assert schedule.change_every == 7
    assert schedule.switch_steps() == (0, 7, 14)
    assert _indices(schedule, 20) == [0] * 7 + [1] * 7 + [2] * 6
    assert schedule.phrases[schedule.phrase_index(13)] == (WeightedPrompt("b"),)
    assert schedule.phrases[schedule.phrase_index(10_000)] == (WeightedPrompt("c"),)  # holds; no wrap-around


def test_explicit_change_every_holds_last_phrase() -> None:
    schedule = make_schedule("a ^ b ^ c", steps=20, change_every=5)
    assert schedule.switch_steps() == (0, 5, 10)
    assert _indices(schedule, 20) == [0] * 5 + [1] * 5 + [2] * 10


def test_single_phrase_is_constant() -> None:
    schedule = make_schedule("a:2 | b:-1", steps=9)
    assert {schedule.phrases[schedule.phrase_index(step)] for step in range(30)} == {parse_prompts("a:2 | b:-1")}
    assert schedule.switch_steps() == (0,)
    assert _indices(make_schedule("a", steps=1, change_every=1), 5) == [0] * 5


def test_change_every_one_and_uneven_split() -> None:
    assert _indices(make_schedule("a ^ b ^ c", steps=5, change_every=1), 5) == [0, 1, 2, 2, 2]
    assert make_schedule("a ^ b", steps=7).switch_steps() == (0, 4)


def test_unreached_phrases_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="generator.text_to_image.prompts"):
        make_schedule("a ^ b ^ c", steps=20, change_every=10)
    assert "only 2 of 3 story phrases" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="generator.text_to_image.prompts"):
        make_schedule("a ^ b ^ c", steps=20)
    assert caplog.text == ""


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"steps": 0}, "steps must be"),
    ({"steps": -3}, "steps must be"),
    ({"steps": 10, "change_every": -1}, "change_every must be"),
    ({"steps": 2.5}, "steps must be"),
])
def test_make_schedule_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        make_schedule("a ^ b", **kwargs)
    _one_sentence(str(info.value))


def test_prompt_schedule_validates() -> None:
    phrase = (WeightedPrompt("a"),)
    with pytest.raises(InputError, match="change_every"):
        PromptSchedule((phrase,), 0)
    with pytest.raises(InputError, match="at least one phrase"):
        PromptSchedule((), 3)
    with pytest.raises(InputError, match="at least one phrase"):
        PromptSchedule((phrase, ()), 3)
    with pytest.raises(InputError, match="negative"):
        PromptSchedule((phrase,), 1).phrase_index(-1)
    assert PromptSchedule([list(phrase)], 2).phrases == (phrase,)  # type: ignore[arg-type]
