"""Image addresses on a server others reach: public internet addresses only, redirects and
names that resolve to private addresses included; the command line fetches as before."""

from __future__ import annotations

import http.server
import io
import socket
import threading
from collections.abc import Iterator

import pytest
from PIL import Image

from generator.errors import InputError
from generator.io import fetch
from generator.io.images import open_image
from generator.weights import store


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


class _Server:
    """A tiny HTTP server on one loopback address: ``/cat.png`` and redirects by path."""

    def __init__(self, host: str) -> None:
        self.redirects: dict[str, str] = {}
        self.paths: list[str] = []
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                state.paths.append(self.path)
                if self.path in state.redirects:
                    self.send_response(302)
                    self.send_header("Location", state.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = _png()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.base = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_Server, _Server]]:
    """Two servers: one on 127.0.0.2 that the test treats as a public address, one on
    127.0.0.1 (private, as it is). No proxy, no offline mode."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", store.OFFLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    real = fetch.is_public_address
    monkeypatch.setattr(fetch, "is_public_address", lambda address: address == "127.0.0.2" or real(address))
    public, private = _Server("127.0.0.2"), _Server("127.0.0.1")
    try:
        yield public, private
    finally:
        public.close()
        private.close()


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.5", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fe80::1%eth0",
                                     "fc00::5", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::",
                                     "::", "not an address"])
def test_local_private_and_metadata_addresses_are_not_public(address: str) -> None:
    assert not fetch.is_public_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                                     "::ffff:8.8.8.8"])
def test_internet_addresses_are_public(address: str) -> None:
    assert fetch.is_public_address(address)


def test_public_only_fetches_public_addresses_and_refuses_the_server_s_own(servers, monkeypatch) -> None:
    public, private = servers
    monkeypatch.setenv(fetch.PUBLIC_ONLY_ENV, "1")
    assert open_image(f"{public.base}/cat.png", what="init image").getpixel((0, 0)) == (10, 200, 30)
    with pytest.raises(InputError) as caught:
        open_image(f"{private.base}/cat.png", what="init image")
    assert str(caught.value) == (f"the init image {private.base}/cat.png leads to 127.0.0.1, which is not a public "
                                 "internet address, and this server fetches only those; upload the image instead.")
    assert private.paths == []  # never connected
    with pytest.raises(InputError, match=r"leads to 127\.0\.0\.1, which is not a public"):
        open_image(f"https://127.0.0.1:{private.server.server_address[1]}/cat.png")  # https checks the same way


def test_a_redirect_from_a_public_address_to_a_private_one_is_refused(servers, monkeypatch) -> None:
    public, private = servers
    monkeypatch.setenv(fetch.PUBLIC_ONLY_ENV, "1")
    public.redirects["/hop"] = f"{private.base}/cat.png"
    public.redirects["/ftp"] = "ftp://127.0.0.1/cat.png"
    with pytest.raises(InputError, match=r"leads to 127\.0\.0\.1, which is not a public"):
        open_image(f"{public.base}/hop", what="image prompt")
    with pytest.raises(InputError, match="redirects to an address that is not http"):
        open_image(f"{public.base}/ftp", what="image prompt")
    assert public.paths == ["/hop", "/ftp"] and private.paths == []
    monkeypatch.delenv(fetch.PUBLIC_ONLY_ENV)  # the command line follows the same redirect
    assert open_image(f"{public.base}/hop", what="image prompt").size == (6, 4)
    assert private.paths == ["/cat.png"]


def test_a_name_resolving_to_a_private_address_is_refused_without_a_second_lookup(servers, monkeypatch) -> None:
    public, private = servers
    monkeypatch.setenv(fetch.PUBLIC_ONLY_ENV, "1")
    port = public.server.server_address[1]
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):  # public on the first answer, private on any later one
        lookups.append(host)
        if host == "images.example":
            host = "127.0.0.2" if len(lookups) == 1 else "127.0.0.1"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    assert open_image(f"http://images.example:{port}/cat.png").size == (6, 4)
    assert lookups == ["images.example"]  # connected to the address it checked
    with pytest.raises(InputError, match=r"leads to images\.example \(127\.0\.0\.1\)"):
        open_image(f"http://images.example:{port}/cat.png")



def test_a_body_without_a_length_is_cut_at_the_cap_and_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Content-Length to refuse up front (a chunked or connection-closed body): reading stops
    one byte past the cap, whatever the server would go on sending."""
    sent: list[int] = []

    class Endless(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection does

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(64):  # 64 MB if read to the end
                    self.wfile.write(b"\0" * 2**20)
                    sent.append(1)
            except OSError:
                pass  # the client stopped reading

    for name in ("http_proxy", "HTTP_PROXY", store.OFFLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fetch, "MAX_FETCH_BYTES", 2 * 2**20)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/big.png"
        with pytest.raises(InputError, match="larger than the 2 MB this tool fetches"):
            fetch.fetch_bytes(url, "image prompt")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert len(sent) < 64  # the rest was never read
