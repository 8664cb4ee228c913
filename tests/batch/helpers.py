"""Shared pieces of the batch tests: the command line with tiny models, and reading a batch folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FAST = ["--size", "32", "32", "--cutn", "4", "--steps", "4", "--precision", "fp32"]


def batch_args(tiny_files, jobs: Path, out: Path, *extra: str) -> list[str]:
    """``batch JOBS`` with the tiny models and fast settings."""
    return ["batch", str(jobs), *tiny_files.cli_args(), *FAST, "--out", str(out), *extra]


def lines(folder: Path) -> list[dict[str, Any]]:
    """Every line of a batch folder's batch.jsonl."""
    return [json.loads(line) for line in (folder / "batch.jsonl").read_text().splitlines()]


def run_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
