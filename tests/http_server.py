"""A local HTTP file server on 127.0.0.1 for download tests: Range requests, cut connections,
ignored ranges, 404s and redirects (loops included), with every request recorded."""

from __future__ import annotations

import http.server
import random
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from generator.weights import download

PAYLOAD_BYTES = 300_000


def _payload(seed: int = 1234, size: int = PAYLOAD_BYTES) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class FileServer:
    """State and switches of the local test server."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)  # by path; octet-stream otherwise
    cut_after: int | None = None  # first request only: send this many body bytes, then hang up
    ignore_range: bool = False  # answer 200 with the whole body even to a Range request
    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (status, Location)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    user_agents: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Answer ``path`` with ``status`` and ``Location: location``; returns the URL of ``path``."""
        self.redirects[path] = (status, location)
        return self.url(path)

    @property
    def ranges(self) -> list[str | None]:
        return [rng for _, rng in self.requests]


def _handler(server_state: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state = server_state
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, rng))
                state.user_agents.append(self.headers.get("User-Agent"))
                redirect = state.redirects.get(self.path)
                cut = None
                if redirect is None:  # the cut applies to the first request that is not redirected
                    cut, state.cut_after = state.cut_after, None
            if redirect is not None:
                status, location = redirect
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = state.files.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if match and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            chunk = body[start:]
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Content-Type", state.content_types.get(self.path, "application/octet-stream"))
            if cut is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if cut is not None:
                self.wfile.write(chunk[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up on a kept-alive connection
            super().handle_error(request, client_address)


@pytest.fixture
def file_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    """A ThreadingHTTPServer on 127.0.0.1 serving seeded random bytes at /file.bin.

    Downloads read 16 KiB chunks meanwhile, so a few hundred KB give many progress calls.
    """
    monkeypatch.setattr(download, "CHUNK_BYTES", 16 * 1024)
    state = FileServer(files={"/file.bin": _payload()})
    server = _Server(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
