"""Fetching an image a user gave as an http(s) address: a size limit, a timeout, and, on a
server that others reach, public addresses only.

A web UI served to a network fetches the addresses its users type, so a user could make the
server request what only the server can reach: its own ports, the local network, a cloud
metadata service (169.254.169.254). With :data:`PUBLIC_ONLY_ENV` set (``app.py`` sets it when
served beyond this computer) every connection, redirects included, goes only to an address
on the public internet: the host name is resolved once, each address is checked, and the
socket connects to the checked address itself, so a name that resolves differently on a
second lookup cannot slip through. Only http and https are followed; proxies are not used
in that mode (a proxy would make the server's own network the destination).
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import urllib.error
import urllib.request
from typing import Any

from generator.errors import InputError
from generator.weights.store import offline_mode

MAX_FETCH_BYTES = 64 * 2**20
FETCH_TIMEOUT = 30
PUBLIC_ONLY_ENV = "GENERATOR_FETCH_PUBLIC_ONLY"
"""Set to 1 to fetch images from public internet addresses only (a server others reach)."""
_TRUE = ("1", "true", "yes", "on")
_USER_AGENT = "vqgan-studio (image fetch)"


class _RefusedAddress(OSError):
    """A connection the public-only mode does not make; ``address`` is what the host resolved to."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}")
        self.host = host
        self.address = address


def _public_only() -> bool:
    return os.environ.get(PUBLIC_ONLY_ENV, "").strip().lower() in _TRUE


def is_public_address(address: str) -> bool:
    """Whether an IP address is on the public internet: not loopback, private, link-local
    (cloud metadata), shared (carrier NAT), multicast, reserved or unspecified, IPv4 inside
    IPv6 (``::ffff:127.0.0.1``) judged as the IPv4 address it carries."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is not part of it
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        carried = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if carried is not None:
            ip = carried
    return ip.is_global and not ip.is_multicast


def _connect_public(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,
                    source_address: Any = None, *args: Any, **kwargs: Any) -> socket.socket:
    """``socket.create_connection`` to the first public address ``host`` resolves to; refuses
    the host when any address it resolves to is not public (a name pointing at both a public
    and a private address is refused, not raced)."""
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        if not is_public_address(str(sockaddr[0])):
            raise _RefusedAddress(host, str(sockaddr[0]))
    error: OSError | None = None
    for family, kind, protocol, _, sockaddr in infos:
        sock = socket.socket(family, kind, protocol)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)  # the checked address itself, never a second lookup
            return sock
        except OSError as failure:
            sock.close()
            error = failure
    raise error or OSError(f"{host} has no address")


class _PublicHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connect_public


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connect_public  # TLS is wrapped around it, checked against the host name


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_PublicHTTPConnection, req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_PublicHTTPSConnection, req, context=self._context)


def _public_opener() -> urllib.request.OpenerDirector:
    """An opener that speaks http and https only, follows redirects through the same checks and
    uses no proxy."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler({}), _PublicHTTPHandler(), _PublicHTTPSHandler(),
                    urllib.request.HTTPRedirectHandler(), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor(), urllib.request.UnknownHandler()):
        opener.add_handler(handler)
    return opener


def _reason(error: BaseException) -> str:
    code = getattr(error, "code", None)
    reason = getattr(error, "reason", None) or error
    return f"HTTP {code} {reason}" if code else str(reason)


def fetch_bytes(url: str, what: str) -> bytes:
    """The body at ``url``, at most :data:`MAX_FETCH_BYTES`, within :data:`FETCH_TIMEOUT` seconds.

    Raises:
        InputError: offline mode (``$GENERATOR_OFFLINE``), an address the public-only mode
            refuses (``$GENERATOR_FETCH_PUBLIC_ONLY``), an unreachable address, an HTTP error,
            or a body over the size limit; each in one sentence that says what to do.
    """
    if offline_mode():
        raise InputError(f"offline mode forbids fetching the {what} {url}; download it and give its path.")
    public_only = _public_only()
    opener = _public_opener() if public_only else urllib.request.build_opener()
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_FETCH_BYTES:
                raise InputError(f"the {what} at {url} is {int(declared) / 2**20:.0f} MB, more than the "
                                 f"{MAX_FETCH_BYTES // 2**20} MB this tool fetches; download it and give its path.")
            data = response.read(MAX_FETCH_BYTES + 1)
    except InputError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as error:
        refused = getattr(error, "reason", error)
        if isinstance(refused, _RefusedAddress):
            where = refused.host if refused.host == refused.address else f"{refused.host} ({refused.address})"
            raise InputError(f"the {what} {url} leads to {where}, which is not a public internet address, and "
                             "this server fetches only those; upload the image instead.") from None
        if public_only and isinstance(error, urllib.error.URLError) and "unknown url type" in str(error.reason):
            raise InputError(f"the {what} {url} redirects to an address that is not http(s), which this server "
                             "does not follow; upload the image instead.") from None
        raise InputError(f"could not fetch the {what} {url} ({_reason(error)[:120]}); check the address, or "
                         "download the image and give its path.") from None
    if len(data) > MAX_FETCH_BYTES:
        raise InputError(f"the {what} at {url} is larger than the {MAX_FETCH_BYTES // 2**20} MB this tool "
                         "fetches; download it and give its path.")
    return data
