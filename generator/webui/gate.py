"""The web UI's gate: an ASGI middleware in front of every Gradio route.

It gives each visitor its identity (an ``HttpOnly`` cookie holding a random secret, see
:mod:`generator.webui.visitors`) and enforces, whatever Gradio itself allows:

* **Files** (``/gradio_api/file=...``): served only to a visitor they were sent to or that
  uploaded them (:class:`~generator.webui.visitors.ServedFiles`, filled from the responses
  it passes on: event results and previews, upload answers). Nothing else is served, whatever
  its path: not the outputs folder, not another visitor's results or uploads.
* **No fetching through the server**: ``/proxy=`` and file routes naming a URL are refused,
  and so is an event input that names a URL or a server file the visitor was not given.
* **Sessions and events**: Gradio keys a page's events and their results by a session hash
  and event ids that travel in the clear (and that an API client picks itself). The gate binds
  each to the first visitor that uses it; anyone else presenting it is refused, so a leaked
  hash or id gives nothing.

Refusals are one sentence in a JSON ``detail`` with a 4xx status, never a 500.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from generator.webui.visitors import VISITOR_COOKIE, ServedFiles, is_secret, new_secret, visitor_id

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 16 * 2**20  # an event's JSON (form values and file references; files are uploaded apart)
MAX_CAPTURE = 32 * 2**20  # JSON answers read for the files they name
_TOKEN_KEYS = ("session_hash", "event_id")
_TOKEN_IN_PATH = re.compile(r"/(?:heartbeat|stream)/([^/]+)|/call/[^/]+/([^/]+)$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")
_NOT_YOURS = "this file was not sent to you by this server; open it from your own page or results."
_NO_FETCH = "this server does not fetch addresses for its visitors; open the address yourself."
_UNUSABLE = "the server could not use the values sent (its log has the details); check them and try again."


class VisitorGate:
    """ASGI middleware: visitor cookie, file access, no fetching, session and event binding.

    Args:
        app: the Gradio app.
        served: which files each visitor was sent (shared with nothing else).
        bindings: how many session hashes and event ids to remember (the oldest are forgotten,
            and a forgotten one is bound again to whoever uses it next).
    """

    def __init__(self, app: Callable[..., Awaitable[None]], served: ServedFiles, bindings: int = 200_000):
        self.app = app
        self.served = served
        self.bindings = bindings
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        secret = _cookie(scope, VISITOR_COOKIE)
        fresh = not is_secret(secret)
        if fresh:
            secret = new_secret()
            scope = _with_cookie(scope, secret)
        visitor = visitor_id(secret)
        cookie = _set_cookie(secret, scope) if fresh else None
        path = scope.get("path", "")
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if "/proxy=" in path:
            await _refuse(send, 403, _NO_FETCH, cookie)
            return
        target = _file_target(path)
        if target is not None:
            if _URL.match(target):
                await _refuse(send, 403, _NO_FETCH, cookie)
            elif not self.served.allows(visitor, os.path.abspath(target)):
                await _refuse(send, 404, _NOT_YOURS, cookie)
            else:
                await self.app(scope, receive, _adding_cookie(send, cookie))
            return
        body, receive = await self._body(scope, receive)
        if body is _TOO_BIG:
            await _refuse(send, 413, "the request is larger than this server takes; send less at once.", cookie)
            return
        refusal = self._check(visitor, scope, path, body)
        if refusal is not None:
            await _refuse(send, 403, refusal, cookie)
            return
        await self.app(scope, receive, self._capturing(send, visitor, path, cookie))

    # --- requests -----------------------------------------------------------------------

    async def _body(self, scope: Scope, receive: Receive) -> tuple[Any, Receive]:
        """The parsed JSON body of a POST (replayed to the app), else None."""
        if scope.get("method") != "POST" or "json" not in _header(scope, b"content-type"):
            return None, receive
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, _replay(b"".join(chunks), message, receive)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BODY:
                return _TOO_BIG, receive
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return parsed, _replay(raw, None, receive)

    def _check(self, visitor: str, scope: Scope, path: str, body: Any) -> str | None:
        """Why this request is refused (a sentence), or None."""
        tokens = _tokens(scope, path, body)
        with self._lock:
            for token in tokens:
                owner = self._owners.get(token)
                if owner is not None and owner != visitor:
                    logger.warning("refused a request that presented another visitor's session or event id")
                    return "this session belongs to another visitor; reload the page to start your own."
            for token in tokens:
                self._bind(token, visitor)
        if isinstance(body, dict):
            for value in _file_inputs(body.get("data")):
                if _URL.match(value):
                    return "a file input names an address; upload the file instead."
                if not self.served.allows(visitor, value):
                    return "a file input names a file this server did not give you; upload it instead."
        return None

    def _bind(self, token: str, visitor: str) -> None:
        self._owners[token] = visitor
        self._owners.move_to_end(token)
        while len(self._owners) > self.bindings:
            self._owners.popitem(last=False)

    # --- responses ----------------------------------------------------------------------

    def _capturing(self, send: Send, visitor: str, path: str, cookie: bytes | None) -> Send:
        """``send``, reading JSON answers and event streams for the files and event ids they
        give this visitor."""
        state: dict[str, Any] = {"kind": None, "buffer": b"", "size": 0, "replaced": False}

        async def wrapped(message: Message) -> None:
            if state["replaced"]:
                return  # the body of an answer already replaced by a sentence
            if message["type"] == "http.response.start" and message.get("status", 200) >= 500:
                logger.warning("the app answered %s to %s; the visitor gets a sentence instead", message["status"],
                               path)
                state["replaced"] = True
                await _refuse(send, 422, _UNUSABLE, cookie)
                return
            if message["type"] == "http.response.start":
                kind = dict(message.get("headers") or []).get(b"content-type", b"").decode("latin-1")
                state["kind"] = "json" if "json" in kind else "stream" if "event-stream" in kind else None
                if cookie is not None:
                    message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            elif message["type"] == "http.response.body" and state["kind"] is not None:
                self._read(state, message.get("body", b""), bool(message.get("more_body")), visitor, path)
            await send(message)

        return wrapped

    def _read(self, state: dict[str, Any], chunk: bytes, more: bool, visitor: str, path: str) -> None:
        if state["kind"] == "json":
            state["size"] += len(chunk)
            if state["size"] <= MAX_CAPTURE:
                state["buffer"] += chunk
            if not more and state["size"] <= MAX_CAPTURE:
                self._grant(visitor, path, state["buffer"])
            return
        buffer = state["buffer"] + chunk  # an event stream: one JSON object per "data:" line
        lines = buffer.split(b"\n")
        state["buffer"] = lines.pop() if more else b""
        if len(state["buffer"]) > MAX_CAPTURE:
            state["buffer"] = b""
        for line in lines:
            if line.startswith(b"data:"):
                self._grant(visitor, path, line[5:])

    def _grant(self, visitor: str, path: str, raw: bytes) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            return
        if path.endswith("/upload") and isinstance(payload, list):  # the paths of this visitor's uploads
            for value in payload:
                if isinstance(value, str):
                    self.served.grant(visitor, value)
        self.served.grant_all(visitor, payload)
        if isinstance(payload, dict) and isinstance(payload.get("event_id"), str):
            with self._lock:
                self._bind(f"event_id:{payload['event_id']}", visitor)


_TOO_BIG = object()


def _replay(raw: bytes, pending: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then whatever comes next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return pending if pending is not None else {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


def _tokens(scope: Scope, path: str, body: Any) -> list[str]:
    """The session hashes and event ids a request presents (query, path or JSON body)."""
    found: list[tuple[str, str]] = []
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    for key in _TOKEN_KEYS:
        found += [(key, value) for value in query.get(key, [])]
        if isinstance(body, dict) and isinstance(body.get(key), str):
            found.append((key, body[key]))
    match = _TOKEN_IN_PATH.search(path)
    if match:
        if match.group(1):  # /heartbeat/<session>, /stream/<session or event>/...
            found += [("session_hash", match.group(1)), ("event_id", match.group(1))]
        else:  # /call/<api>/<event>
            found.append(("event_id", match.group(2)))
    return [f"{key}:{value}" for key, value in found if value]


def _file_inputs(payload: Any, depth: int = 0) -> list[str]:
    """What an event's input data names as files: the ``path`` of every object that has one
    (Gradio's file objects, with or without their type marker), server paths and addresses alike."""
    found: list[str] = []
    if depth > 64:
        return found
    if isinstance(payload, dict):
        if isinstance(payload.get("path"), str):
            found.append(payload["path"])
        for value in payload.values():
            found += _file_inputs(value, depth + 1)
    elif isinstance(payload, list):
        for value in payload:
            found += _file_inputs(value, depth + 1)
    return found


def _file_target(path: str) -> str | None:
    """What a file route asks for (``/gradio_api/file=<x>``, ``/gradio_api/file/<x>``), else None."""
    if "/file=" in path:
        return path.split("/file=", 1)[1]
    marker = "/gradio_api/file/"
    return path.split(marker, 1)[1] if marker in path else None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1").lower()
    return ""


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            cookie_name, _, cookie_value = part.strip().partition("=")
            if cookie_name == name:
                return cookie_value
    return None


def _with_cookie(scope: Scope, secret: str) -> Scope:
    """``scope`` whose request carries the visitor cookie (for Gradio's handlers)."""
    headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() != b"cookie"]
    others = [v.decode("latin-1") for k, v in scope.get("headers") or [] if k.lower() == b"cookie"]
    cookie = "; ".join([*others, f"{VISITOR_COOKIE}={secret}"]) if others else f"{VISITOR_COOKIE}={secret}"
    return {**scope, "headers": [*headers, (b"cookie", cookie.encode("latin-1"))]}


def _set_cookie(secret: str, scope: Scope) -> bytes:
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    return (f"{VISITOR_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000{secure}").encode()


def _adding_cookie(send: Send, cookie: bytes | None) -> Send:
    if cookie is None:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
        await send(message)

    return wrapped


async def _refuse(send: Send, status: int, sentence: str, cookie: bytes | None) -> None:
    body = json.dumps({"detail": sentence}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if cookie is not None:
        headers.append((b"set-cookie", cookie))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

