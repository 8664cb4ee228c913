"""The status line under the buttons: a thin progress bar with its text, an error that stays
until the next action, or what a finished run made. HTML, escaped; it never covers an image
(Gradio's own progress overlay is turned off for the heavy events, see ``app.py``)."""

from __future__ import annotations

import html
import re

_AGAIN = re.compile(r"(,? ?(?:and|then) )?run (?:the|this|that|your) command again", re.IGNORECASE)
_RUN_COMMAND = re.compile(r"\brun (`python -m generator [^`]*`)")
_SERVER_PATH = re.compile(r"(?<![\w:/.`])(?:~|/)(?:[^\s/'\"`(),;]+/)+([^\s/'\"`(),;]*[^\s/'\"`(),;.])")


def progress_html(step: int, total: int, text: str) -> str:
    """A bar ``step/total`` wide with ``text`` beside it."""
    percent = 0.0 if total <= 0 else max(0.0, min(100.0, 100.0 * step / total))
    return (f'<div class="status-progress" data-step="{step}" data-total="{total}">'
            f'<div class="status-bar"><div style="width:{percent:.1f}%"></div></div>'
            f'<span>{html.escape(text)}</span></div>')


def message_html(text: str, kind: str = "info") -> str:
    """One line of ``kind`` ``info``, ``done`` or ``error`` (errors are red and stay)."""
    role = ' role="alert"' if kind == "error" else ""
    return f'<div class="status-{kind}"{role}>{html.escape(text)}</div>'


def for_the_page(text: str) -> str:
    """A sentence written for the command line, said as a web page says it: one error (the
    first line), no folders of the server (a path becomes its file name, a folder "the
    server's folder"), no "run the command again" (the page has buttons), commands named as
    the server owner's to run, and a capital first letter (unless the sentence starts with a
    name, such as a model's)."""
    text = (text.strip().splitlines() or [""])[0]
    text = _AGAIN.sub(lambda again: " and try again" if again[1] else "try again", text)
    text = _SERVER_PATH.sub(lambda path: path[1] if "." in path[1] else "the server's folder", text)
    text = _RUN_COMMAND.sub(r"ask whoever runs this server to run \1", text)
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() and first.islower() else text


def error_html(text: str) -> str:
    """An error sentence, said for the page (:func:`for_the_page`), red, staying until the next action."""
    return message_html(for_the_page(text), "error")


def hint_html(text: str) -> str:
    """Advice before anything is pressed (a model that is not installed): said for the page,
    in the hint style, not as an error."""
    return message_html(for_the_page(text), "hint")
