"""Gradio glue for the web UI's events: handlers with one named parameter per widget (so the
API reads ``prompts``, ``steps``...), jobs streamed as widget updates, and every error turned
into the one sentence the status line shows (never an HTTP 500)."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gradio as gr

from generator.errors import GeneratorError
from generator.webui.jobs import Update
from generator.webui.status import error_html, message_html, progress_html
from generator.webui.studio import Session

logger = logging.getLogger("generator.app")
UNEXPECTED = "something went wrong on the server (its log has the details); check the values and try again"
"""What a visitor is told of an error that is not one of the project's sentences (never its Python text)."""


def named(handler: Callable[..., Iterator[tuple]], names: Sequence[str]) -> Callable[..., Iterator[tuple]]:
    """A Gradio handler with one parameter per widget name (the API then reads ``prompts``,
    ``steps``, ``cutn``...), after the run's claim (a State, not part of the API), passing
    ``handler`` the claim, the values as a dict, and the request."""

    def wrapper(*args: Any) -> Iterator[tuple]:
        claim, *values, request = args
        yield from handler(claim, dict(zip(names, values, strict=True)), request)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("claim", kind)] + [inspect.Parameter(name, kind) for name in names]
        + [inspect.Parameter("request", kind, annotation=gr.Request)])
    wrapper.__annotations__ = {"request": gr.Request}  # Gradio finds special parameters by type hint
    return wrapper


def update_tuple(update: Update, names: Sequence[str]) -> tuple[Any, ...]:
    """The widget updates of an :class:`Update`, in the order of ``names``; gr.skip() leaves a widget.
    The status line shows progress as a thin bar. Plain values, so API clients get plain values;
    which image boxes are shown is set around the run (see ``shown``)."""
    status = None
    if update.progress is not None:
        status = progress_html(*update.progress)
    elif update.status is not None:
        status = message_html(update.status, "done" if update.result else "info")
    compare = tuple(update.results) if update.results and len(update.results) == 2 else None
    values = {"status": status, "preview": update.preview, "result": update.result, "results": update.results,
              "compare": compare,
              "video": update.video, "files": update.files, "info": update.info, "seed": update.seed,
              "plot": update.plot}
    return tuple(gr.skip() if values[name] is None else values[name] for name in names)


def status_only(html: str, names: Sequence[str]) -> tuple[Any, ...]:
    return tuple(html if name == "status" else gr.skip() for name in names)


def stream(make_job: Callable[[], Iterator[Update]], names: Sequence[str], session: Session) -> Iterator[tuple]:
    """Drive a job for Gradio: widget updates, notices as toasts, and an error (in the settings
    or in the run) as one sentence that stays in the status line; API clients receive it as
    the error. ``make_job`` checks the settings and makes the job.

    A Stop (or a closed browser tab) closes this generator at a ``yield``; ``closing`` then
    closes the job, which keeps what the run produced.
    """
    try:
        job = make_job()
        with contextlib.closing(job):
            for update in job:
                if update.notice:
                    gr.Info(update.notice)
                yield update_tuple(update, names)
        return
    except (GeneratorError, gr.Error) as error:
        message = error.message if isinstance(error, gr.Error) else str(error)
    except Exception:  # never a bare HTTP 500 or a Python message: say what happened, keep the page usable
        logger.exception("a job failed")
        message = UNEXPECTED
    finally:
        session.release()  # a run that never started gives its claim back
    yield status_only(error_html(message), names)
    raise gr.Error(message, print_exception=False, visible=False)


def guarded(handler: Callable[..., tuple], status_index: int | None, count: int) -> Callable[..., tuple]:
    """A quick (unqueued) handler whose errors become the status sentence at ``status_index`` of
    its ``count`` outputs (None: no status output; the outputs stay as they were) instead of an
    HTTP 500 or a Python message."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            values = handler(*args, **kwargs)
        except (GeneratorError, gr.Error) as error:
            message = error.message if isinstance(error, gr.Error) else str(error)
            values = tuple(error_html(message) if i == status_index else gr.skip() for i in range(count))
        except Exception:
            logger.exception("a handler failed")
            values = tuple(error_html(UNEXPECTED) if i == status_index else gr.skip() for i in range(count))
        return values[0] if count == 1 else values  # Gradio takes one output's value bare, not in a tuple

    wrapper.__signature__ = inspect.signature(handler)  # type: ignore[attr-defined]
    wrapper.__annotations__ = getattr(handler, "__annotations__", {})
    return wrapper
