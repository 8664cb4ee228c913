"""generator.weights.download behind HTTP redirects (mirrors answer 30x to a CDN), against the
local server of tests/http_server.py: followed, verified, resumed; a loop is one clear error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from generator.errors import WeightsError
from generator.weights import digests, download
from tests.http_server import FileServer


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(server: FileServer, urls: list[str], dest: Path, **kwargs: object) -> Path:
    body = server.files["/file.bin"]
    options: dict = {"sha256": _sha(body), "size": len(body), "progress": lambda d, t: None, "timeout": 10}
    options.update(kwargs)
    return download.download_file(urls, dest, **options)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_followed_and_the_file_verified(file_server, tmp_path: Path, status: int) -> None:
    body = file_server.files["/file.bin"]
    url = file_server.redirect("/mirror/model.bin", "/file.bin", status)
    seen: list[tuple[int, int | None]] = []
    dest = _fetch(file_server, [url], tmp_path / "model.bin", progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == body
    assert [path for path, _ in file_server.requests] == ["/mirror/model.bin", "/file.bin"]
    assert seen[-1] == (len(body), len(body))
    assert digests.cached_sha256(dest) == _sha(body) and digests.sidecar_path(dest).exists()
    assert not download.part_path(dest).exists()


def test_a_chain_of_redirects_with_absolute_locations(file_server, tmp_path: Path) -> None:
    body = file_server.files["/file.bin"]
    file_server.redirect("/b", file_server.url("/file.bin"), 307)
    url = file_server.redirect("/a", file_server.url("/b"), 301)
    _fetch(file_server, [url], tmp_path / "model.bin")
    assert (tmp_path / "model.bin").read_bytes() == body
    assert [path for path, _ in file_server.requests] == ["/a", "/b", "/file.bin"]


def test_a_redirect_to_other_bytes_fails_the_checksum(file_server, tmp_path: Path) -> None:
    body = file_server.files["/file.bin"]
    file_server.files["/other.bin"] = bytes(reversed(body))  # same size, other content
    url = file_server.redirect("/mirror/model.bin", "/other.bin")
    dest = tmp_path / "model.bin"
    with pytest.raises(WeightsError) as info:
        _fetch(file_server, [url], dest)
    message = str(info.value)
    assert f"has sha256 {_sha(bytes(reversed(body)))} instead of the expected {_sha(body)}" in message
    assert "\n" not in message
    assert not dest.exists() and not download.part_path(dest).exists()


def test_an_interrupted_redirected_download_resumes_through_the_redirect(file_server, tmp_path: Path) -> None:
    body = file_server.files["/file.bin"]
    url = file_server.redirect("/mirror/model.bin", "/file.bin")
    dest = tmp_path / "model.bin"
    file_server.cut_after = 100_000
    with pytest.raises(WeightsError):
        _fetch(file_server, [url], dest)
    assert download.part_path(dest).read_bytes() == body[:100_000] and not dest.exists()

    seen: list[int] = []
    _fetch(file_server, [url], dest, progress=lambda d, t: seen.append(d))
    assert dest.read_bytes() == body
    assert file_server.requests == [("/mirror/model.bin", None), ("/file.bin", None),
                                    ("/mirror/model.bin", "bytes=100000-"), ("/file.bin", "bytes=100000-")]
    assert seen[0] == 100_000 and seen[-1] == len(body)


def _loop_error(server: FileServer, dest: Path) -> tuple[str, str]:
    server.redirect("/loop-b", "/loop-a")
    url = server.redirect("/loop-a", "/loop-b")
    with pytest.raises(WeightsError) as info:
        _fetch(server, [url], dest)
    return url, str(info.value)


def test_a_redirect_loop_is_an_error_naming_the_url_after_a_bounded_number_of_hops(file_server, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    url, message = _loop_error(file_server, dest)
    assert message.startswith(f"could not download model.bin from {url} (")
    assert "redirect" in message and str(dest) in message
    assert len(file_server.requests) <= 12  # gave up after a bounded number of hops
    assert not dest.exists() and not download.part_path(dest).exists()


def test_a_redirect_loop_is_one_line_like_every_other_download_error(file_server, tmp_path: Path) -> None:
    _, message = _loop_error(file_server, tmp_path / "model.bin")
    assert "\n" not in message


def test_a_redirect_loop_on_one_mirror_falls_back_to_the_next(file_server, tmp_path: Path) -> None:
    body = file_server.files["/file.bin"]
    loop = file_server.redirect("/self", "/self", 301)
    _fetch(file_server, [loop, file_server.url("/file.bin")], tmp_path / "model.bin")
    assert (tmp_path / "model.bin").read_bytes() == body
    assert file_server.requests[-1] == ("/file.bin", None)
    assert 2 <= len(file_server.requests) <= 12
