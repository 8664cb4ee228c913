r"""Prompt grammar: weighted text, image and noise prompts, and story schedules.

Entries are separated by ``|``; each is ``text``, ``text:weight`` or ``text:weight:stop``.
Weight and stop are read only from the end and only when they parse as numbers, so colons in
the text survive (``a photo: sunset``, ``C:\images\cat.png``, ``http://h:8080/a.png:0.5``).
``^`` separates story phrases. An entry may end with ``@ MASK``: a region prompt, scored only
on the part of the image that the mask image paints white (``red sky:1.5 @ sky.png``; the
weight and stop come before the ``@``). ``\|``, ``\:``, ``\^`` and ``\@`` are literal
characters (an escaped colon never starts a weight); a backslash before anything else is kept
(Windows paths).
Gotcha: a trailing number is a weight, so ``16:9`` is text ``16`` with weight 9 and
``http://host:8080`` is ``http://host`` with weight 8080; write ``16\:9`` to keep the text.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from generator.errors import InputError

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"\\([|:^@])|(.)", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)",
                     re.IGNORECASE)
_SEED = re.compile(r"\+?\d+")
_URL = re.compile(r"https?://", re.IGNORECASE)
IMPLAUSIBLE_WEIGHT = 100  # larger weights are almost always a colon that belongs to the text
_Tokens = list[tuple[str, bool]]  # (character, escaped)


def _number(part: str) -> float | None:
    """The float ``part`` spells (surrounding whitespace allowed), else None."""
    part = part.strip()
    return float(part) if _NUMBER.fullmatch(part) else None


def _show(text: str) -> str:
    """``text`` quoted for an error message, shortened when long."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _check_weight(weight: float, what: str) -> None:
    if not math.isfinite(weight):
        problem = "a weight that is not a number" if math.isnan(weight) else "an infinite weight"
        raise InputError(f"{what} has {problem}; use a finite non-zero number "
                         "(write '\\:' if the colon belongs to the text).")
    if weight == 0:
        raise InputError(f"{what} has weight 0, which has no effect; use a non-zero weight "
                         "(negative pushes away) or remove it.")


@dataclass(frozen=True)
class WeightedPrompt:
    """One prompt: text (or an image path), its weight and its stop.

    Attributes:
        text: What to draw, or an image file path; surrounding whitespace is stripped.
        weight: Loss multiplier; finite and non-zero, negative pushes away from the prompt.
        stop: The prompt stops pulling once its distance falls below this (``-inf``: never).
        region: a mask image whose white part is where this prompt applies (None: everywhere).
    """

    text: str
    weight: float = 1.0
    stop: float = float("-inf")
    region: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise InputError("a prompt has no text; give some text (or a path) before its weight.")
        object.__setattr__(self, "text", self.text.strip())
        object.__setattr__(self, "weight", float(self.weight))
        object.__setattr__(self, "stop", float(self.stop))
        _check_weight(self.weight, f"the prompt {_show(self.text)}")
        if math.isnan(self.stop) or self.stop == math.inf:
            raise InputError(f"the prompt {_show(self.text)} has stop {self.stop}, which would "
                             "switch it off; use a finite stop or -inf for none.")

    def __str__(self) -> str:
        """The entry in prompt grammar; ``parse_prompts(str(p)) == (p,)``."""
        text = _escape(self.text)
        region = "" if self.region is None else " @ " + escape_region(self.region)
        if self.weight == 1.0 and self.stop == -math.inf:
            return text + region
        if text.endswith("\\"):
            text += " "  # "\:" would read as an escaped colon
        suffix = ":" + _format(self.weight)
        return text + suffix + ("" if self.stop == -math.inf else ":" + _format(self.stop)) + region


@dataclass(frozen=True)
class NoisePrompt:
    """A random CLIP embedding drawn from ``seed`` (normal noise) with a weight.

    Attributes:
        seed: Non-negative integer below 2**64 seeding the embedding.
        weight: Loss multiplier; finite and non-zero.
    """

    seed: int
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not _is_int(self.seed) or not 0 <= self.seed < 2**64:
            raise InputError(f"the noise prompt seed {self.seed!r} is not an integer from 0 to "
                             "2**64-1; give a whole non-negative number.")
        object.__setattr__(self, "weight", float(self.weight))
        _check_weight(self.weight, f"the noise prompt with seed {self.seed}")

    def __str__(self) -> str:
        """The entry in noise prompt grammar (``seed`` or ``seed:weight``)."""
        return str(self.seed) if self.weight == 1.0 else f"{self.seed}:{_format(self.weight)}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _format(value: float) -> str:
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape(text: str) -> str:
    """``text`` written so that the parser reads it back as all text."""
    out: list[str] = []
    last_colon = text.rfind(":")
    tail_is_number = last_colon >= 0 and _number(text[last_colon + 1:]) is not None
    for i, char in enumerate(text):
        if char in "|^@":
            out.append("\\" + char)
        elif char == ":" and ((i == last_colon and tail_is_number) or text[i - 1:i] == "\\"):
            out.append("\\:")
        else:
            out.append(char)
    return "".join(out)


def escape_region(path: str) -> str:
    """A region's path written so that the prompt parser reads it back whole (after ``@``)."""
    return "".join("\\" + char if char in "|^@" else char for char in path)


def _lex(text: str) -> _Tokens:
    """``text`` as (character, escaped) pairs: ``\\|``, ``\\:``, ``\\^`` and ``\\@`` are escapes."""
    return [(m[1], True) if m[1] else (m[2], False) for m in _TOKEN.finditer(text)]


def _split(tokens: _Tokens, sep: str) -> list[_Tokens]:
    parts: list[_Tokens] = [[]]
    for char, escaped in tokens:
        if char == sep and not escaped:
            parts.append([])
        else:
            parts[-1].append((char, escaped))
    return parts


def _plain(tokens: _Tokens) -> str:
    return "".join(char for char, _ in tokens)


def _entry(tokens: _Tokens, what: str) -> WeightedPrompt:
    pieces = _split(tokens, "@")
    region = None
    if len(pieces) > 2:
        raise InputError(f"{what} has more than one '@' region; give one mask per entry, or write '\\@' to keep an "
                         "@ as text.")
    if len(pieces) == 2:
        tokens, region = pieces[0], _plain(pieces[1]).strip()
        if not region:
            raise InputError(f"{what} has an '@' with no mask after it; write 'text @ mask.png', or '\\@' to keep "
                             "the @ as text.")
    parts = [_plain(part) for part in _split(tokens, ":")]
    weight = stop = None
    if len(parts) >= 3:
        weight, stop = _number(parts[-2]), _number(parts[-1])
        if weight is not None and stop is not None:
            parts = parts[:-2]
    if len(parts) >= 2 and (weight is None or stop is None):
        weight, stop = _number(parts[-1]), None
        if weight is not None:
            parts = parts[:-1]
    text = ":".join(parts).strip()
    if not text:
        raise InputError(f"{what} has no text before its weight; put the text (or path) "
                         "first, as in 'text:weight'.")
    if weight is not None and abs(weight) > IMPLAUSIBLE_WEIGHT:
        logger.warning("%s reads as %s with weight %g, which is unusually large: a number after the last colon "
                       "is a weight; write '\\:' before it to keep it as text (e.g. %s).",
                       what, _show(text), weight, f"'{text[:60]}\\:{_format(weight)}'")
    return WeightedPrompt(text, 1.0 if weight is None else weight,
                          -math.inf if stop is None else stop, region)


def _phrase(tokens: _Tokens, kind: str, where: str) -> tuple[WeightedPrompt, ...]:
    entries = _split(tokens, "|")
    prompts = []
    for number, entry in enumerate(entries, 1):
        if not _plain(entry).strip():
            raise InputError(f"entry {number} of {len(entries)} in {where} is empty; remove "
                             "the extra '|' or put a prompt there.")
        prompts.append(_entry(entry, f"the {kind} {_show(_plain(entry).strip())}"))
    return tuple(prompts)


def _require_text(text: str, kind: str) -> None:
    if not isinstance(text, str) or not text.strip():
        if kind == "prompt":
            raise InputError("the prompt is empty; give some text to draw, an image prompt or "
                             "a noise prompt.")
        raise InputError(f"the {kind} is empty; give at least one entry or leave it out.")


def parse_prompts(text: str, *, kind: str = "prompt") -> tuple[WeightedPrompt, ...]:
    """Parse one phrase: ``|``-separated entries.

    Args:
        text: The phrase, e.g. ``"a forest:1 | smoke:-0.5"``.
        kind: What the entries are, for error messages ("prompt", "image prompt").

    Raises:
        InputError: The text is empty, holds an empty entry or an unescaped ``^``.
    """
    _require_text(text, kind)
    tokens = _lex(text)
    if any(char == "^" and not escaped for char, escaped in tokens):
        raise InputError(f"the {kind} {_show(text)} holds a story separator '^'; parse it as "
                         "a story or write '\\^' to keep it as text.")
    return _phrase(tokens, kind, f"the {kind} {_show(text)}")


def parse_story(text: str) -> tuple[tuple[WeightedPrompt, ...], ...]:
    """Parse ``^``-separated story phrases, each a ``|``-list; no ``^`` gives one phrase.

    Raises:
        InputError: The text is empty or holds an empty phrase or entry.
    """
    _require_text(text, "prompt")
    phrases = _split(_lex(text), "^")
    story = []
    for number, phrase in enumerate(phrases, 1):
        if not _plain(phrase).strip():
            raise InputError(f"phrase {number} of {len(phrases)} in the story {_show(text)} is "
                             "empty; remove the extra '^' or put a prompt there.")
        where = f"phrase {number} of the story {_show(text)}" if len(phrases) > 1 else \
            f"the prompt {_show(text)}"
        story.append(_phrase(phrase, "prompt", where))
    return tuple(story)


def parse_image_prompts(text: str) -> tuple[WeightedPrompt, ...]:
    """Parse ``path:weight:stop | ...`` and check that every path is an existing file
    (http(s) addresses are kept as they are and fetched when used).

    Files are not opened; ``~`` is expanded in the returned text.

    Raises:
        InputError: Bad grammar, or a path that is missing or is not a file.
    """
    prompts = []
    for prompt in parse_prompts(text, kind="image prompt"):
        if _URL.match(prompt.text):  # fetched when used
            prompts.append(prompt)
            continue
        path = Path(prompt.text).expanduser()
        if not path.exists():
            raise InputError(f"image prompt file {prompt.text} does not exist; check the path.")
        if not path.is_file():
            raise InputError(f"image prompt {prompt.text} is not a file; give the path of an "
                             "image file.")
        prompts.append(WeightedPrompt(str(path), prompt.weight, prompt.stop, prompt.region))
    return tuple(prompts)


def parse_noise_prompts(text: str) -> tuple[NoisePrompt, ...]:
    """Parse ``seed:weight | seed``: each seed a non-negative integer.

    Raises:
        InputError: Empty text or entry, a bad seed, a bad weight or extra ``:`` parts.
    """
    _require_text(text, "noise prompt")
    entries = text.split("|")
    prompts = []
    for number, entry in enumerate(entries, 1):
        entry = entry.strip()
        if not entry:
            raise InputError(f"entry {number} of {len(entries)} in the noise prompt "
                             f"{_show(text)} is empty; remove the extra '|' or put a seed there.")
        seed, _, weight_text = entry.partition(":")
        if ":" in weight_text:
            raise InputError(f"the noise prompt {_show(entry)} has too many ':' parts; write "
                             "'seed' or 'seed:weight'.")
        if not _SEED.fullmatch(seed.strip()):
            raise InputError(f"the noise prompt {_show(entry)} does not start with a seed; "
                             "give a whole non-negative number such as 42.")
        weight = _number(weight_text) if weight_text.strip() else 1.0
        if weight is None:
            raise InputError(f"the weight of the noise prompt {_show(entry)} is not a number; "
                             "write 'seed:weight' such as '42:0.5'.")
        prompts.append(NoisePrompt(int(seed), weight))
    return tuple(prompts)


@dataclass(frozen=True)
class PromptSchedule:
    """Story phrases shown in turn: advance every ``change_every`` steps, then hold the last.

    Attributes:
        phrases: The story's phrases, each a non-empty tuple of prompts.
        change_every: Steps each phrase lasts (the last one lasts until the end).
    """

    phrases: tuple[tuple[WeightedPrompt, ...], ...]
    change_every: int

    def __post_init__(self) -> None:
        phrases = tuple(tuple(phrase) for phrase in self.phrases)
        if not phrases or not all(phrases):
            raise InputError("a prompt schedule needs at least one phrase and no empty phrase; "
                             "give a prompt for every phrase.")
        if not _is_int(self.change_every) or self.change_every < 1:
            raise InputError(f"change_every must be a positive whole number of steps, not "
                             f"{self.change_every!r}; use 1 or more (0 splits evenly).")
        object.__setattr__(self, "phrases", phrases)

    def phrase_index(self, step: int) -> int:
        """Index of the phrase used at ``step`` (counted from 0)."""
        if step < 0:
            raise InputError(f"step {step} is negative; steps count from 0.")
        return min(step // self.change_every, len(self.phrases) - 1)

    def switch_steps(self) -> tuple[int, ...]:
        """The steps at which each phrase starts: ``0, change_every, 2 * change_every, ...``."""
        return tuple(i * self.change_every for i in range(len(self.phrases)))



def make_schedule(text: str, *, steps: int, change_every: int = 0) -> PromptSchedule:
    """Parse a story and schedule it over ``steps`` steps.

    Args:
        text: The story, e.g. ``"a forest ^ a burning forest | smoke:-0.5 ^ ashes"``.
        steps: Number of optimisation steps (at least 1).
        change_every: Steps per phrase; 0 splits the steps evenly (``ceil(steps / phrases)``).

    Raises:
        InputError: Bad grammar, ``steps < 1`` or ``change_every < 0``.
    """
    if not _is_int(steps) or steps < 1:
        raise InputError(f"steps must be a whole number of at least 1, not {steps!r}; "
                         "give a positive number of steps.")
    if not _is_int(change_every) or change_every < 0:
        raise InputError(f"change_every must be 0 (split evenly) or a positive whole number, "
                         f"not {change_every!r}; give 0 or more.")
    phrases = parse_story(text)
    schedule = PromptSchedule(phrases, change_every or math.ceil(steps / len(phrases)))
    shown = sum(start < steps for start in schedule.switch_steps())
    if shown < len(phrases):
        logger.warning("only %d of %d story phrases are reached in %d steps with change_every=%d",
                       shown, len(phrases), steps, schedule.change_every)
    return schedule


@dataclass(frozen=True)
class PromptSpec:
    """What an image is asked to look like, in prompt grammar (this module).

    Attributes:
        prompts: text prompts; ``^`` separates story phrases.
        image_prompts: image files, ``path:weight:stop | ...``.
        noise_prompts: ``seed:weight | ...``.
        change_every: steps per story phrase (0: split ``steps`` evenly).
    """

    prompts: str = ""
    image_prompts: str = ""
    noise_prompts: str = ""
    change_every: int = 0


def parse_spec(spec: PromptSpec, *, steps: int) -> tuple[PromptSchedule | None, tuple[WeightedPrompt, ...],
                                                          tuple[NoisePrompt, ...]]:
    """The parsed prompts of ``spec`` over ``steps`` steps: (story schedule or None, image
    prompts, noise prompts); no model and no file is touched, so front ends check a run with it
    before they load anything.

    Raises:
        InputError: all three are empty, or one is malformed.
    """
    schedule = make_schedule(spec.prompts, steps=steps, change_every=spec.change_every) \
        if spec.prompts.strip() else None
    images = parse_image_prompts(spec.image_prompts) if spec.image_prompts.strip() else ()
    noises = parse_noise_prompts(spec.noise_prompts) if spec.noise_prompts.strip() else ()
    if schedule is None and not images and not noises:
        raise InputError("the prompt is empty; give some text to draw, an image prompt or a noise prompt.")
    return schedule, images, noises
