"""generator.weights.download against a local HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import errno
import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from generator.errors import WeightsError
from generator.weights import digests, download
from tests.http_server import FileServer


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(server: FileServer, dest: Path, **kwargs: object) -> Path:
    body = server.files["/file.bin"]
    options: dict = {"sha256": _sha(body), "size": len(body), "progress": lambda d, t: None,
                     "timeout": 10}
    options.update(kwargs)
    urls = options.pop("urls", [server.url("/file.bin")])
    return download.download_file(urls, dest, **options)


def test_download_verifies_reports_progress_and_writes_sidecar(file_server, tmp_path):
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "sub" / "model.bin"
    result = _fetch(file_server, dest, progress=lambda d, t: seen.append((d, t)))
    body = file_server.files["/file.bin"]
    assert result == dest and dest.read_bytes() == body
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[0] == 0 and done[-1] == len(body)
    assert len(seen) > 2 and all(t == len(body) for _, t in seen)
    assert not download.part_path(dest).exists()
    assert digests.sidecar_path(dest).exists()
    assert file_server.ranges == [None]
    assert file_server.user_agents == [f"vqgan-studio/{_project_version()}"]


def _project_version() -> str:
    return tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["version"]


def test_every_request_says_vqgan_studio_and_the_project_version(file_server, tmp_path):
    """Resumed and redirected requests identify the same way as the first (pyproject's version)."""
    file_server.cut_after = 100_000
    url = file_server.redirect("/mirror/model.bin", "/file.bin")
    with pytest.raises(WeightsError):
        _fetch(file_server, tmp_path / "model.bin", urls=[url])
    _fetch(file_server, tmp_path / "model.bin", urls=[url])
    assert len(file_server.user_agents) == 4 and file_server.ranges[2:] == ["bytes=100000-"] * 2
    assert set(file_server.user_agents) == {f"vqgan-studio/{_project_version()}"}


def test_interrupted_download_is_kept_and_resumed_with_a_range_request(file_server, tmp_path):
    body = file_server.files["/file.bin"]
    dest = tmp_path / "model.bin"
    file_server.cut_after = 100_000
    with pytest.raises(WeightsError) as info:
        _fetch(file_server, dest)
    assert str(dest) in str(info.value)
    assert download.part_path(dest).read_bytes() == body[:100_000]
    assert not dest.exists()

    seen: list[int] = []
    _fetch(file_server, dest, progress=lambda d, t: seen.append(d))
    assert file_server.ranges == [None, "bytes=100000-"]
    assert dest.read_bytes() == body
    assert seen[0] == 100_000 and seen[-1] == len(body)


def test_second_mirror_resumes_after_the_first_is_cut(file_server, tmp_path):
    body = file_server.files["/file.bin"]
    file_server.cut_after = 50_000
    dest = tmp_path / "model.bin"
    url = file_server.url("/file.bin")
    _fetch(file_server, dest, urls=[url, url])
    assert file_server.ranges == [None, "bytes=50000-"]
    assert dest.read_bytes() == body


def test_server_ignoring_range_restarts_cleanly(file_server, tmp_path):
    body = file_server.files["/file.bin"]
    dest = tmp_path / "model.bin"
    download.part_path(dest).write_bytes(b"\x00" * 70_000)  # garbage: must not be kept
    file_server.ignore_range = True
    _fetch(file_server, dest)
    assert file_server.ranges == ["bytes=70000-"]
    assert dest.read_bytes() == body


def test_complete_partial_answered_416_is_verified_without_refetching(file_server, tmp_path):
    body = file_server.files["/file.bin"]
    dest = tmp_path / "model.bin"
    download.part_path(dest).write_bytes(body)
    _fetch(file_server, dest, size=None)  # unknown size: the server is asked, answers 416
    assert file_server.ranges == [f"bytes={len(body)}-"]
    assert dest.read_bytes() == body


def test_bad_partial_answered_416_is_deleted_and_restarted_once(file_server, tmp_path):
    body = file_server.files["/file.bin"]
    dest = tmp_path / "model.bin"
    download.part_path(dest).write_bytes(b"\x01" * (len(body) + 10))
    _fetch(file_server, dest, size=None)
    assert file_server.ranges == [f"bytes={len(body) + 10}-", None]
    assert dest.read_bytes() == body


def test_a_published_prefix_of_the_hash_is_checked_too(file_server, tmp_path):
    """Some sources publish only the first hex digits, which pooch cannot compare: checked here."""
    digest = _sha(file_server.files["/file.bin"])
    dest = _fetch(file_server, tmp_path / "model.bin", sha256=digest[:8].upper())
    assert json.loads(digests.sidecar_path(dest).read_text())["sha256"] == digest == digests.cached_sha256(dest)
    other = tmp_path / "other.bin"
    with pytest.raises(WeightsError) as info:
        _fetch(file_server, other, sha256="deadbeef")
    assert f"has sha256 {digest} instead of the expected deadbeef, so it was deleted" in str(info.value)
    assert not other.exists() and not download.part_path(other).exists()


def test_a_wrong_file_in_the_way_is_moved_aside_not_overwritten(file_server, tmp_path):
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"someone's own model")
    _fetch(file_server, dest, sha256=None)  # without a hash only its size tells it apart
    assert dest.read_bytes() == file_server.files["/file.bin"]
    assert (tmp_path / "model.bin.rejected").read_bytes() == b"someone's own model"


def test_sha256_mismatch_deletes_the_file_and_says_so(file_server, tmp_path):
    dest = tmp_path / "model.bin"
    with pytest.raises(WeightsError) as info:
        _fetch(file_server, dest, sha256="0" * 64)
    message = str(info.value)
    assert "deleted" in message and "0" * 64 in message
    assert _sha(file_server.files["/file.bin"]) in message
    assert "download it by hand" in message and "\n" not in message
    assert not dest.exists() and not download.part_path(dest).exists()


def test_size_mismatch_deletes_the_file(file_server, tmp_path):
    dest = tmp_path / "model.bin"
    body = file_server.files["/file.bin"]
    file_server.files["/short.bin"] = body[:1000]
    with pytest.raises(WeightsError, match="1000 bytes instead of the expected 300000.*deleted"):
        _fetch(file_server, dest, urls=[file_server.url("/short.bin")])
    assert not dest.exists() and not download.part_path(dest).exists()


def test_first_mirror_404_falls_back_to_the_second(file_server, tmp_path):
    dest = tmp_path / "model.bin"
    _fetch(file_server, dest, urls=[file_server.url("/gone.bin"), file_server.url("/file.bin")])
    assert [path for path, _ in file_server.requests] == ["/gone.bin", "/file.bin"]
    assert dest.read_bytes() == file_server.files["/file.bin"]


def test_all_mirrors_failing_names_the_urls_and_the_destination(file_server, tmp_path):
    dest = tmp_path / "model.bin"
    urls = [file_server.url("/a.bin"), file_server.url("/b.bin")]
    with pytest.raises(WeightsError) as info:
        _fetch(file_server, dest, urls=urls)
    message = str(info.value)
    assert all(url in message for url in urls) and "404" in message
    assert f"save it as {dest}" in message and "connection" in message
    assert not dest.exists()


def test_unreachable_host_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="could not download model.bin"):
        download.download_file(["http://127.0.0.1:9/x"], tmp_path / "model.bin", sha256=None,
                               size=None, progress=lambda d, t: None, timeout=2)


def test_destination_appears_only_after_verification(file_server, tmp_path):
    dest = tmp_path / "model.bin"
    part = download.part_path(dest)
    observed: list[tuple[bool, bool]] = []
    _fetch(file_server, dest, progress=lambda d, t: observed.append((dest.exists(), part.exists())))
    assert observed and not any(dest_seen for dest_seen, _ in observed)
    assert all(part_seen for _, part_seen in observed[1:])
    assert dest.exists() and not part.exists()


def test_disk_full_keeps_the_partial_and_explains(file_server, tmp_path, monkeypatch):
    real_open = download._open_part

    class FullDisk:
        def __init__(self, handle):
            self.handle, self.writes = handle, 0

        def close(self):
            self.handle.close()

        def write(self, data):
            self.writes += 1
            if self.writes > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

    monkeypatch.setattr(download, "_open_part", lambda part, mode: FullDisk(real_open(part, mode)))
    dest = tmp_path / "model.bin"
    with pytest.raises(WeightsError) as info:
        _fetch(file_server, dest)
    message = str(info.value)
    assert "disk is full" in message and str(tmp_path) in message and "--weights-dir" in message
    assert download.part_path(dest).stat().st_size > 0 and not dest.exists()


def test_cached_sha256_reuses_the_sidecar_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"abc" * 1000)
    calls: list[Path] = []
    real = digests.sha256_of
    monkeypatch.setattr(digests, "sha256_of", lambda p: calls.append(Path(p)) or real(p))
    first = digests.cached_sha256(path)
    second = digests.cached_sha256(path)
    assert first == second == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert len(calls) == 1
    path.write_bytes(b"xyz" * 1000)  # new size and mtime: the cache is stale
    assert digests.cached_sha256(path) == hashlib.sha256(b"xyz" * 1000).hexdigest()
    assert len(calls) == 2
    digests.sidecar_path(path).write_text("not json")
    assert digests.cached_sha256(path) == hashlib.sha256(b"xyz" * 1000).hexdigest()
    assert len(calls) == 3


def test_tqdm_progress_draws_a_bar_on_stderr(capsys):
    callback, close = download.tqdm_progress("model.bin")
    for done in (0, 500, 1000):
        callback(done, 1000)
    close()
    err = capsys.readouterr().err
    assert "model.bin" in err and "100%" in err
