r"""Safe arithmetic expressions for keyframe values: ``--zoom "1 + 0.04*bass"``.

The grammar, read by a small recursive-descent parser (nothing is ever handed to Python's
``eval``, ``exec`` or ``compile``; the parsed expression is a list of operations on floats)::

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := ("-" | "+") unary | power
    power      := atom ("**" ["-" | "+"] NUMBER)?
    atom       := NUMBER | NAME | FUNCTION "(" expression ("," expression)* ")" | "(" expression ")"

Names: ``t`` (the frame's time in seconds, ``frame / fps``), ``frame`` (its number) and the audio
features ``loudness``, ``bass``, ``mid``, ``treble`` and ``onset``, each 0 to 1 at every frame
(:mod:`generator.animate.audio`). Functions: ``sin``, ``cos`` (radians), ``abs``, ``min`` and
``max`` (two values or more) and ``clip(x, lo, hi)``. A power's exponent is a number between -8
and 8 (``bass**2``, ``onset**0.5``), never an expression: so ``2**1000`` and ``9**9**9`` are
refused as written, and the largest power of a value is bounded (values are floats; an overflow
is a non-finite value, refused with the frame it happens at). ``-x**2`` is ``-(x**2)``, as in
Python.

Limits: at most :data:`MAX_LENGTH` characters and :data:`MAX_DEPTH` levels of parentheses,
calls and signs. Anything else (strings, attribute access ``a.b``, subscripts, other names or
functions, ``lambda``, comprehensions) is an :class:`InputError` whose one sentence quotes the
bad part and says what to write.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from generator.animate.audio import FEATURES
from generator.errors import InputError

TIME_NAMES = ("t", "frame")
"""The names of a frame's time: ``t`` in seconds and ``frame`` (its number)."""
NAMES = TIME_NAMES + FEATURES
"""Every name an expression may use."""
MAX_LENGTH = 500
"""The most characters an expression may have."""
MAX_DEPTH = 32
"""The most levels of parentheses, function calls and signs an expression may nest."""
MAX_EXPONENT = 8
"""The largest exponent (in absolute value) of a power."""


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


FUNCTIONS: dict[str, tuple[Callable[..., float], int, int | None, str]] = {
    "sin": (math.sin, 1, 1, "sin(x)"),
    "cos": (math.cos, 1, 1, "cos(x)"),
    "abs": (abs, 1, 1, "abs(x)"),
    "min": (min, 2, None, "min(a, b, ...)"),
    "max": (max, 2, None, "max(a, b, ...)"),
    "clip": (_clip, 3, 3, "clip(x, lo, hi)"),
}
"""Each function: what it computes, the least and most values it takes (None: any), how it is written."""
_BINARY: dict[str, Callable[[float, float], float]] = {"+": operator.add, "-": operator.sub, "*": operator.mul,
                                                      "/": operator.truediv}
GRAMMAR = ("write numbers, the names t (seconds), frame and the audio features loudness, bass, mid, treble and onset "
           "(0 to 1), + - * / and ** with a number exponent from -8 to 8, parentheses, and the functions sin, cos, "
           "abs, min, max and clip(x, lo, hi), as in '1 + 0.04*bass'")
"""What an expression may hold, for messages."""
_KNOWN_NAMES = ("the names are t (seconds), frame, and the audio features loudness, bass, mid, treble and onset "
                "(each 0 to 1)")

_TOKEN = re.compile(r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_]\w*)"
                    r"|(?P<op>\*\*|[-+*/(),])|(?P<other>\S))", re.ASCII)

Operation = tuple[str, object]
"""One step of an evaluation on a stack: ("number", value), ("name", name), ("negate", None),
(an operator of + - * /, None), ("power", exponent) or ("call", (function, count))."""


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


@dataclass(frozen=True)
class _Token:
    """A piece of an expression: its kind (number, name, op, other, end), text and place."""

    kind: str
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    tokens, position = [], 0
    while True:
        match = _TOKEN.match(text, position)
        if match is None:  # only blanks remain
            tokens.append(_Token("end", "", len(text), len(text)))
            return tokens
        kind = match.lastgroup or "other"
        tokens.append(_Token(kind, match[kind], match.start(kind), match.end()))
        position = match.end()


@dataclass(frozen=True)
class Expression:
    """A parsed expression (see the module's grammar), evaluated per frame.

    Attributes:
        text: the expression as written.
        program: its operations in the order a stack evaluates them.
        names: the names it uses.
    """

    text: str
    program: tuple[Operation, ...]
    names: frozenset[str]

    @property
    def features(self) -> tuple[str, ...]:
        """The audio features it uses, in :data:`FEATURES` order."""
        return tuple(name for name in FEATURES if name in self.names)

    def evaluate(self, values: Mapping[str, float]) -> float:
        """The value for ``values`` of its names: NaN where it has none (a division by zero, a
        power without a real value, an overflow); infinities are returned as they come.

        Raises:
            KeyError: ``values`` lacks a name it uses.
        """
        stack: list[float] = []
        try:
            for kind, argument in self.program:
                if kind == "number":
                    stack.append(argument)  # type: ignore[arg-type]
                elif kind == "name":
                    stack.append(float(values[argument]))  # type: ignore[index]
                elif kind == "negate":
                    stack[-1] = -stack[-1]
                elif kind == "power":
                    stack[-1] = math.pow(stack[-1], argument)  # type: ignore[arg-type]
                elif kind == "call":
                    name, count = argument  # type: ignore[misc]
                    arguments = stack[-count:]
                    del stack[-count:]
                    stack.append(float(FUNCTIONS[name][0](*arguments)))
                else:
                    right = stack.pop()
                    stack[-1] = _BINARY[kind](stack[-1], right)
        except (ArithmeticError, ValueError):  # 1/0, (-1)**0.5, 10**400, sin(inf)
            return math.nan
        return stack[0]


def parse_expression(text: str, setting: str = "the value", whole: str | None = None) -> Expression:
    """Parse an expression (the module's grammar).

    Args:
        text: the expression.
        setting: what it is for, for messages (``--zoom``).
        whole: the whole setting it is part of (a keyframe's value), quoted in messages.

    Raises:
        InputError: too long, too deep, or anything outside the grammar, in one sentence that
            quotes the bad part.
    """
    return _Parser(text, setting, text if whole is None else whole).parse()


class _Parser:
    """Recursive descent over the tokens, writing the program as it goes."""

    def __init__(self, text: str, setting: str, whole: str):
        self.text, self.setting, self.whole = text, setting, whole
        self.program: list[Operation] = []
        self.names: set[str] = set()
        self.depth = 0
        self.index = 0
        self.tokens: list[_Token] = []

    def refuse(self, problem: str, advice: str = GRAMMAR) -> InputError:
        return InputError(f"{self.setting} {_show(self.whole)} {problem}; {advice}.")

    def parse(self) -> Expression:
        if len(self.text) > MAX_LENGTH:
            raise self.refuse(f"is {len(self.text)} characters long, more than the {MAX_LENGTH} an expression may "
                              "have", "write a shorter expression")
        self.tokens = _tokens(self.text)
        stray = next((token for token in self.tokens if token.kind == "other"), None)
        if stray is not None:  # quotes, '.', brackets: refused before anything is read as a name
            raise self.refuse(self.stray(stray))
        if self.peek.kind == "end":
            raise self.refuse("has an empty value", "write a number such as 1.02 or an expression such as "
                                                    "'1 + 0.04*bass'")
        self.expression()
        if self.peek.kind != "end":
            token = self.peek
            if token.text == ")":
                raise self.refuse(f"has a ')' that closes no '(' (after {self.before(token)})")
            if token.text == ",":
                raise self.refuse(f"has a ',' outside a function's parentheses (after {self.before(token)})")
            raise self.unexpected(token, "an operator")
        return Expression(self.text, tuple(self.program), frozenset(self.names))

    @property
    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += min(1, len(self.tokens) - 1 - self.index)
        return token

    def before(self, token: _Token) -> str:
        return _show(self.text[:token.start].strip()[-30:])

    def unexpected(self, token: _Token, wanted: str) -> InputError:
        if token.kind == "end":
            return self.refuse(f"ends where {wanted} should follow")
        if token.kind == "other":
            return self.refuse(self.stray(token))
        place = f"after {self.before(token)}" if token.start else "at the start"
        return self.refuse(f"has {_show(token.text)} {place}, where {wanted} should be")

    def stray(self, token: _Token) -> str:
        """What is wrong with a character no expression has."""
        character = token.text
        if character in "'\"":
            return (f"has a string (the quote {character!r} at character {token.start + 1}), which expressions do "
                    "not have")
        if character == ".":
            return (f"has '.' outside a number (at character {token.start + 1}, after {self.before(token)}): "
                    "attribute access is not part of expressions")
        if character in "[]{}":
            return (f"has {character!r} (at character {token.start + 1}): subscripts, lists and the like are not "
                    "part of expressions")
        return f"has {character!r} (at character {token.start + 1}), which is not part of an expression"

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.refuse(f"nests parentheses, calls and signs more than {MAX_DEPTH} deep",
                              "write a flatter expression")

    def expression(self) -> None:
        self.term()
        while self.peek.text in ("+", "-") and self.peek.kind == "op":
            operation = self.take().text
            self.term()
            self.program.append((operation, None))

    def term(self) -> None:
        self.unary()
        while self.peek.text in ("*", "/") and self.peek.kind == "op":
            operation = self.take().text
            self.unary()
            self.program.append((operation, None))

    def unary(self) -> None:
        if self.peek.kind == "op" and self.peek.text in ("-", "+"):
            sign = self.take().text
            self.nest()
            self.unary()
            self.depth -= 1
            if sign == "-":
                self.program.append(("negate", None))
            return
        self.power()

    def power(self) -> None:
        first = self.peek
        self.atom()
        if self.peek.text != "**":
            return
        self.take()
        sign = self.take() if self.peek.text in ("-", "+") else None
        exponent = self.take()
        if exponent.kind != "number":
            raise self.refuse(f"has the power {_show(self.text[first.start:exponent.end].strip())}, whose exponent "
                              "is not a "
                              f"number", f"write a number from -{MAX_EXPONENT} to {MAX_EXPONENT} as the exponent, "
                                         "as in 'bass**2'")
        value = float(exponent.text) * (-1 if sign is not None and sign.text == "-" else 1)
        written = _show(self.text[first.start:exponent.end].strip())
        if self.peek.text == "**":
            raise self.refuse(f"raises a power to a power (in {_show(self.text[first.start:].strip())})",
                              f"write one power with a number exponent from -{MAX_EXPONENT} to {MAX_EXPONENT}, "
                              "with parentheses if needed")
        if not abs(value) <= MAX_EXPONENT:
            raise self.refuse(f"has the power {written}, whose exponent is more than {MAX_EXPONENT} in size",
                              f"write an exponent from -{MAX_EXPONENT} to {MAX_EXPONENT}")
        self.program.append(("power", value))

    def atom(self) -> None:
        token = self.take()
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                raise self.refuse(f"has the number {_show(token.text)}, which is too large",
                                  "write numbers a float can hold (up to about 1e308)")
            self.program.append(("number", value))
        elif token.kind == "name":
            self.name(token)
        elif token.text == "(":
            self.nest()
            self.expression()
            self.depth -= 1
            closing = self.take()
            if closing.text != ")":
                if closing.kind == "end":
                    raise self.refuse(f"has a '(' (at character {token.start + 1}) that is not closed",
                                      "close every '(' with a ')'")
                raise self.unexpected(closing, "')' or an operator")
        else:
            raise self.unexpected(token, "a number, a name or '('")

    def name(self, token: _Token) -> None:
        name = token.text
        called = self.peek.text == "("
        if called and name not in FUNCTIONS:
            if name in NAMES:
                raise self.refuse(f"calls {name!r}, which is a name, not a function",
                                  "write the functions sin, cos, abs, min, max and clip(x, lo, hi), and a '*' to "
                                  f"multiply, as in '2*{name}'")
            raise self.refuse(f"has the unknown function {name!r}",
                              "the functions are sin, cos, abs, min, max and clip(x, lo, hi)")
        if called:
            self.call(token)
            return
        if name in FUNCTIONS:
            raise self.refuse(f"has the function {name!r} without its values",
                              f"write it with parentheses, as in {FUNCTIONS[name][3]!r}")
        if name not in NAMES:
            raise self.refuse(f"has the unknown name {name!r}", _KNOWN_NAMES)
        self.names.add(name)
        self.program.append(("name", name))

    def call(self, token: _Token) -> None:
        name = token.text
        _, least, most, usage = FUNCTIONS[name]
        self.take()  # "("
        self.nest()
        count = 0
        while True:
            self.expression()
            count += 1
            closing = self.take()
            if closing.text == ")":
                break
            if closing.text != ",":
                if closing.kind == "end":
                    raise self.refuse(f"has {name + '('!r} (at character {token.start + 1}) that is not closed",
                                      f"close it with a ')', as in {usage!r}")
                raise self.unexpected(closing, "',' or ')'")
        self.depth -= 1
        if count < least or (most is not None and count > most):
            wanted = f"{least}" if least == most else f"{least} or more"
            raise self.refuse(f"gives {name} {count} value{'s' if count != 1 else ''} where it takes {wanted}",
                              f"write it as {usage!r}")
        self.program.append(("call", (name, count)))
