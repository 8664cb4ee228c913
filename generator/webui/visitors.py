"""Who a web request comes from, and which server files each visitor has been shown.

A visitor is a browser or an API client. Its identity is a random secret (32 bytes) the
server gives it in an ``HttpOnly`` cookie on its first request (:mod:`generator.webui.gate`),
which it sends with every later one: page loads, events, uploads and file downloads alike,
and which no script on the page can read. The server keeps only a digest of the secret
(:func:`visitor_id`), so no record on disk can be replayed. Gradio's session hash, which the
page sends in the clear and which an API client chooses itself, is never an identity: the gate
binds each one to the visitor who used it first.

:class:`ServedFiles` remembers which files of the server (Gradio's cache and upload folders)
were sent to or uploaded by which visitor; the gate serves a file only to those visitors, and
accepts a file as an event's input only from them.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

VISITOR_COOKIE = "vqgan_studio_visitor"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def new_secret() -> str:
    """A fresh visitor secret (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def is_secret(value: str | None) -> bool:
    """Whether ``value`` has the form of a visitor secret."""
    return bool(value) and bool(_TOKEN.fullmatch(value))


def visitor_id(secret: str) -> str:
    """The id a visitor's runs are recorded under: a digest of its secret."""
    return hashlib.sha256(f"vqgan-studio-visitor:{secret}".encode()).hexdigest()


def visitor_of(request: Any) -> str:
    """The visitor id of a Gradio request (its cookie), or ``""`` when it has none (a handler
    called without a request, or a server started without the gate)."""
    cookies = getattr(request, "cookies", None) or {}
    try:
        secret = cookies.get(VISITOR_COOKIE)
    except AttributeError:
        return ""
    return visitor_id(secret) if is_secret(secret) else ""


class ServedFiles:
    """The server files each visitor may fetch or submit: those it was sent or uploaded.

    Bounded: the oldest entries are forgotten past ``limit`` (a forgotten file is refused,
    never shown to someone else).
    """

    def __init__(self, limit: int = 200_000):
        self.limit = limit
        self._owners: OrderedDict[str, set[str]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(path: str | os.PathLike[str]) -> str:
        """How a path is compared: absolute, with symlinks and ``..`` resolved."""
        return os.path.realpath(os.fspath(path))

    def grant(self, visitor: str, path: str | os.PathLike[str]) -> None:
        """Let ``visitor`` fetch (and submit) ``path``."""
        if not visitor:
            return
        key = self.key(path)
        with self._lock:
            self._owners.setdefault(key, set()).add(visitor)
            self._owners.move_to_end(key)
            while len(self._owners) > self.limit:
                self._owners.popitem(last=False)

    def allows(self, visitor: str, path: str | os.PathLike[str]) -> bool:
        """Whether ``visitor`` was sent or uploaded ``path``."""
        if not visitor:
            return False
        try:
            key = self.key(path)
        except (OSError, ValueError):
            return False
        with self._lock:
            return visitor in self._owners.get(key, ())

    def grant_all(self, visitor: str, payload: Any) -> None:
        """Grant every file a response payload (parsed JSON) names: Gradio's file objects
        (``{"path": ..., "url": ".../file=..."}``) and bare file URLs."""
        for path in file_paths(payload):
            self.grant(visitor, path)


FILE_ROUTE = "/file="


def file_paths(payload: Any, depth: int = 0) -> list[str]:
    """The server paths a JSON payload names as files (Gradio ``FileData`` objects, file URLs)."""
    found: list[str] = []
    if depth > 64:
        return found
    if isinstance(payload, dict):
        path, url = payload.get("path"), payload.get("url")
        if isinstance(path, str) and (isinstance(url, str) and FILE_ROUTE in url or _is_file_data(payload)):
            if not path.startswith(("http://", "https://")):
                found.append(path)
        for value in payload.values():
            found += file_paths(value, depth + 1)
    elif isinstance(payload, list):
        for value in payload:
            found += file_paths(value, depth + 1)
    elif isinstance(payload, str) and FILE_ROUTE in payload:
        found.append(payload.split(FILE_ROUTE, 1)[1])
    return found


def _is_file_data(payload: dict) -> bool:
    meta = payload.get("meta")
    return isinstance(meta, dict) and meta.get("_type") == "gradio.FileData"


def is_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (symlinks and ``..`` resolved) lies in ``folder``."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except (OSError, ValueError):
        return False
