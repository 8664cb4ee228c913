"""The status line under the buttons: a thin progress bar with its text, an error that stays
until the next action, or what a finished run made. HTML, escaped; it never covers an image
(Gradio's own progress overlay is turned off for the heavy events, see ``app.py``)."""

from __future__ import annotations

import html


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


def error_html(text: str) -> str:
    """An error sentence, as the command line prints it (``error: ...``)."""
    return message_html(f"error: {text}", "error")
