"""What resuming a cut download saves: the project's downloader against plain ``pooch.retrieve``.

A local HTTP server (the tests' server: Range requests, a connection cut once) serves a file of
``--mib`` MiB and hangs up after half of it on the first request. Each downloader then gets
the file twice: the attempt that is cut, and the retry. Printed per downloader: the bytes the
retry transferred, its seconds, and whether the file came out whole and verified. pooch keeps
no partial file, so its retry starts from zero; the project's downloader keeps ``<name>.part``
and asks for the rest with a Range request.

    python bench/resume.py --mib 200 --rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pooch  # noqa: E402 - after the checkout is on the path

from generator.weights import download  # noqa: E402
from tests.http_server import FileServer, _handler, _Server  # noqa: E402


def _served(state: FileServer, before: int) -> int:
    """Body bytes the server sent for the requests after the first ``before``."""
    size = len(state.files["/file.bin"])
    return sum(size - int((rng or "bytes=0-")[6:-1]) for _, rng in state.requests[before:])


def measure(name: str, body: bytes, digest: str, folder: Path) -> dict[str, object]:
    state = FileServer(files={"/file.bin": body}, cut_after=len(body) // 2)
    server = _Server(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    dest = folder / name / "file.bin"
    dest.parent.mkdir(parents=True)

    def attempt() -> None:
        if name == "project":
            download.download_file([state.url("/file.bin")], dest, sha256=digest, size=len(body),
                                   progress=lambda done, total: None)
        else:
            pooch.retrieve(state.url("/file.bin"), known_hash=f"sha256:{digest}", fname=dest.name,
                           path=dest.parent, progressbar=False)

    try:
        try:
            attempt()
        except Exception:  # the cut attempt fails in each downloader's own way
            pass
        before = len(state.requests)
        started = time.perf_counter()
        attempt()
        seconds = time.perf_counter() - started
        whole = dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == digest
        return {"retry_mib": round(_served(state, before) / 2**20, 1), "retry_s": round(seconds, 2), "whole": whole}
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    body = random.Random(0).randbytes(args.mib * 2**20)
    digest = hashlib.sha256(body).hexdigest()
    for round_ in range(1, args.rounds + 1):
        for name in ("project", "pooch"):
            with tempfile.TemporaryDirectory() as folder:
                figures = measure(name, body, digest, Path(folder))
            print(json.dumps({"bench": "resume", "round": round_, "downloader": name, "mib": args.mib, **figures}),
                  flush=True)


if __name__ == "__main__":
    main()
