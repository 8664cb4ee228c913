"""Shared bits of the benchmark scripts: JSON lines, peak memory, running configs in subprocesses."""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
from typing import Any

import torch

ROOT = __file__.rsplit("/bench/", 1)[0]


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float:
    """Peak GPU memory allocated since reset_peak, or the process's peak resident memory on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def last_record(command: list[str]) -> dict[str, Any]:
    """Run one measurement ``command`` in a fresh process (its peak memory its own) and return
    the JSON line it printed last.

    Raises:
        SystemExit: the command failed (the end of its stderr is printed first).
    """
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        raise SystemExit(done.returncode)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_isolated(script: str, args: list[str]) -> int:
    """Run ``script --one ...`` in a fresh process so that its peak memory is its own."""
    return subprocess.run([sys.executable, script, *args], cwd=ROOT).returncode


def commit() -> str:
    """The git commit measured (short hash, ``+dirty`` when the working tree has changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
