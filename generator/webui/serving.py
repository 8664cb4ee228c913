"""How the web UI is served: Gradio's launch options with the visitor gate in front."""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware
from starlette.routing import Mount

from generator.webui.gate import VisitorGate
from generator.webui.studio import Studio

MAX_UPLOAD = "64mb"
API_PREFIX = "/api/v1"


def launch_options(studio: Studio, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
                   api: Any = None, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch``: the gate (:class:`VisitorGate`) in front of every
    route, Python messages kept from visitors, the upload cap, and the outputs folder as the
    one place Gradio may copy results from (into its cache, whose copies the gate serves only to
    the visitor they were sent to; the outputs folder itself is never served).

    Args:
        studio: the models, the outputs folder and the record of files sent to each visitor.
        host, port, share: where to listen, and whether to open a public gradio.live link.
        api: the HTTP API's app (:func:`generator.serving.api.api_app`), mounted at
            ``/api/v1`` before Gradio's routes, behind the same gate; None: no API.
        extra: more ``launch`` options (``css``, ``prevent_thread_lock``, ``quiet``...).
    """
    return {"server_name": host, "server_port": port, "share": share,
            "allowed_paths": [str(studio.outputs_dir)], "max_file_size": MAX_UPLOAD, "show_error": False,
            "ssr_mode": False, "run_history": False,  # the Gallery is the history; no runs sent to a hub bucket
            "app_kwargs": {"middleware": [Middleware(VisitorGate, served=studio.served)],
                           **({"routes": [Mount(API_PREFIX, app=api)]} if api is not None else {})}, **extra}
