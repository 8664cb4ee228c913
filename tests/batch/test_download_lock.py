"""Weights downloads are safe across processes: one downloads, the others wait for its lock
and then use the verified file (Ray workers on one machine load the same weights at once)."""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

from generator.weights import download, locks

ROOT = Path(__file__).resolve().parents[2]

_DOWNLOAD = """
import sys
from generator.weights import download
url, dest, sha, size = sys.argv[1:]
print("started", flush=True)
path = download.download_file([url], dest, sha256=sha, size=int(size), progress=lambda d, t: None, timeout=10)
print(path.read_bytes() == open(dest, "rb").read(), flush=True)
"""


def _start(file_server, dest: Path) -> subprocess.Popen:
    body = file_server.files["/file.bin"]
    return subprocess.Popen([sys.executable, "-c", _DOWNLOAD, file_server.url("/file.bin"), str(dest),
                             hashlib.sha256(body).hexdigest(), str(len(body))],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_process_waits_for_the_download_and_uses_the_verified_file(file_server, tmp_path: Path) -> None:
    dest = tmp_path / "weights" / "model.ckpt"
    dest.parent.mkdir()
    body = file_server.files["/file.bin"]
    with open(locks.lock_path(dest), "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a first process downloading the file holds it
        waiting = _start(file_server, dest)
        assert waiting.stdout.readline().strip() == "started"
        time.sleep(1.5)  # room to download, were it not waiting for the lock
        dest.write_bytes(body)  # the first process finishes...
        fcntl.flock(held, fcntl.LOCK_UN)  # ...and lets go
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert out.strip() == "True"
    assert file_server.requests == []  # it used the file the first one downloaded
    assert not download.part_path(dest).exists()


def test_two_processes_downloading_the_same_file_fetch_it_once(file_server, tmp_path: Path) -> None:
    dest = tmp_path / "model.ckpt"
    processes = [_start(file_server, dest) for _ in range(2)]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.split() == ["started", "True"]
    assert dest.read_bytes() == file_server.files["/file.bin"]
    assert [path for path, _ in file_server.requests] == ["/file.bin"]


def test_the_lock_is_held_while_downloading_and_removed_after(file_server, tmp_path: Path) -> None:
    dest = tmp_path / "model.ckpt"
    body = file_server.files["/file.bin"]
    seen: list[bool] = []

    def progress(done: int, total: int | None) -> None:
        with open(locks.lock_path(dest), "a+b") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append(False)
                fcntl.flock(probe, fcntl.LOCK_UN)
            except BlockingIOError:
                seen.append(True)

    download.download_file([file_server.url("/file.bin")], dest, sha256=hashlib.sha256(body).hexdigest(),
                           size=len(body), progress=progress)
    assert seen and all(seen)
    assert not locks.lock_path(dest).exists()  # removed by its holder once done


def test_removing_the_lock_file_on_release_keeps_the_lock_exclusive(tmp_path: Path) -> None:
    """The holder deletes the lock file before letting go; a waiter that then holds the deleted
    file's lock must not run alongside one that locked the new file at the same path."""
    dest, inside, overlaps, done = tmp_path / "model.ckpt", [], [], []

    def worker() -> None:
        for _ in range(15):
            with locks.download_lock(dest):
                inside.append(1)
                overlaps.append(len(inside))
                time.sleep(0.002)
                inside.pop()
        done.append(1)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(done) == 6 and len(overlaps) == 90
    assert max(overlaps) == 1  # never two holders at once
    assert not locks.lock_path(dest).exists()
