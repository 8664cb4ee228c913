"""The web UI served in this process from a studio (as ``python app.py`` serves it), for tests
that talk to it over HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def served_app(studio: Any, *, preset: str | None = None, **launch: Any) -> Iterator[Any]:
    """``app.build_demo`` of ``studio`` launched on 127.0.0.1 (``launch``: more launch options,
    such as ``api``); closed afterwards. Yields the demo (its ``local_url``)."""
    import app
    from generator.webui.serving import launch_options

    demo = app.build_demo(studio=studio, **({"preset": preset} if preset else {}))
    demo.launch(**launch_options(studio, prevent_thread_lock=True, quiet=True, **launch))
    try:
        yield demo
    finally:
        demo.close()
