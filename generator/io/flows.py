"""The flow cache of a restyle: the optical flow of every input frame, computed once per video
and kept in the run folder (``flows/``), so ``--resume`` reads it back instead of computing it.

``flows/flows.json`` names what the flows belong to (the video, the run size, every K-th
frame, the method, the frame count: the *key*); ``flows/NNNNNN.npz`` holds frame N's backward
flow (float16) and its consistent pixels. A cache is written into a private scratch folder
while the run has no folder yet, and moved into the run folder with its first frame.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from generator.io.outputs import write_bytes_atomic

KEY_FILE = "flows.json"
FOLDER = "flows"


class FlowCache:
    """Flows of one input video at one size, one file per frame (see the module docstring).

    Attributes:
        folder: where the flows are now (a scratch folder, or a run's ``flows/``).
        key: what they belong to.
    """

    def __init__(self, folder: Path, key: dict[str, Any], *, scratch: bool = False):
        self.folder, self.key, self._scratch = folder, key, scratch

    @classmethod
    def new(cls, key: dict[str, Any]) -> FlowCache:
        """An empty cache in a scratch folder of its own (see :meth:`settle_in`)."""
        cache = cls(Path(tempfile.mkdtemp(prefix="vqgan-studio-flows-")), key, scratch=True)
        cache._write_key()
        return cache

    @classmethod
    def find(cls, run_folder: Path, key: dict[str, Any]) -> FlowCache | None:
        """The cache a run folder kept for ``key``, or None (none kept, or for another video or size)."""
        folder = run_folder / FOLDER
        try:
            kept = json.loads((folder / KEY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cls(folder, key) if kept == key else None

    def _write_key(self) -> None:
        write_bytes_atomic(self.folder / KEY_FILE, json.dumps(self.key, sort_keys=True).encode("utf-8"))

    def _path(self, index: int) -> Path:
        return self.folder / f"{index:06d}.npz"

    def has(self, index: int) -> bool:
        """Whether frame ``index``'s flow is kept."""
        return self._path(index).is_file()

    def complete(self, frames: int) -> bool:
        """Whether the flows of frames 1 .. ``frames - 1`` are all kept."""
        return all(self.has(index) for index in range(1, frames))

    def write(self, index: int, backward: np.ndarray, consistent: np.ndarray) -> None:
        """Keep frame ``index``'s backward flow (H, W, 2) and consistent pixels (H, W)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, backward=backward.astype(np.float16), consistent=consistent.astype(bool))
        write_bytes_atomic(self._path(index), buffer.getvalue(), folder=self.folder)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index``'s (backward flow float32 (H, W, 2), consistent pixels float32 (H, W))."""
        with np.load(self._path(index)) as data:
            return data["backward"].astype(np.float32), data["consistent"].astype(np.float32)

    def settle_in(self, run_folder: Path) -> None:
        """Move (a scratch cache) or copy (another run's) the flows into ``run_folder``'s ``flows/``;
        from then on they are read there. Nothing happens when they are there already."""
        target = run_folder / FOLDER
        if self.folder == target:
            return
        if self._scratch:
            shutil.move(str(self.folder), str(target))
        else:
            shutil.copytree(self.folder, target, dirs_exist_ok=True)
        self.folder, self._scratch = target, False

    def discard(self) -> None:
        """Remove a scratch cache that never reached a run folder."""
        if self._scratch:
            shutil.rmtree(self.folder, ignore_errors=True)
