"""``python app.py`` in a subprocess with the tiny models, as a user starts it (for HTTP tests)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET without cookies."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextlib.contextmanager
def running_app(tiny_files, folder: Path, *extra: str, lazy: bool = True) -> Iterator[tuple[str, Path]]:
    """Serve ``app.py --out <folder>/outputs [--lazy]`` plus ``extra`` flags; yields (base URL, outputs)."""
    out = folder / "outputs"
    port = free_port()
    env = {**os.environ, "GENERATOR_OFFLINE": "1", "GENERATOR_WEIGHTS_DIR": str(folder / "weights"),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "GRADIO_TEMP_DIR": str(folder / "gradio")}
    log_path = folder / "app.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--out", str(out),
                                    *(["--lazy"] if lazy else []), "--device", "cpu", *tiny_files.cli_args(), *extra],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 180
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if get(base)[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.25)
            yield base, out
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
