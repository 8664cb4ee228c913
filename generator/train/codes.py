"""The code sequences a prior is trained on: a training folder's images encoded once by a VQGAN.

Each image is centre-cropped and resized to ``size`` x ``size`` (LANCZOS), encoded to its
(size/f) x (size/f) grid of codebook indices, and the grids are kept with each image's class
label in ``codes.safetensors`` in the run folder (tensors and a JSON header only: reading one
never runs code). Its fingerprint (the VQGAN's tensors, the size, and the files' names, sizes
and modification times) lets ``--resume`` and a later run on the same data and VQGAN reuse the
codes instead of encoding again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from generator.decoder.protocol import Decoder
from generator.errors import InputError
from generator.events import Progress
from generator.io.atomic_files import write_bytes_atomic
from generator.io.images import cover, pil_to_tensor
from generator.train.data import ImageFolder

logger = logging.getLogger(__name__)

CODES_FILE = "codes.safetensors"
FORMAT = "vqgan-studio-codes/1"
ENCODE_BATCH = 16  # images encoded by the VQGAN at once


@dataclass(frozen=True)
class CodeSet:
    """A training folder's images as code grids.

    Attributes:
        codes: (N, h, w) int64 codebook indices, one grid per readable image.
        labels: (N,) int64 class index of each grid (0 for a folder without classes).
        classes: the class names (the sub-folders), empty for a folder without classes.
        files: each grid's image, relative to the training folder.
        size: the side in pixels the images were resized to.
        fingerprint: what the codes depend on (see :func:`fingerprint`).
    """

    codes: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    files: tuple[str, ...]
    size: int
    fingerprint: str

    def __len__(self) -> int:
        return self.codes.shape[0]

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of each code grid."""
        return (self.codes.shape[1], self.codes.shape[2])


def vqgan_digest(vqgan: torch.nn.Module) -> str:
    """The sha256 of a VQGAN's tensors (names, dtypes, shapes and values): the same model gives
    the same digest whatever file or registry name it was loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(vqgan.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def fingerprint(folder: ImageFolder, size: int, vqgan_sha256: str) -> str:
    """What a folder's codes depend on: the VQGAN, the size, and each file's relative name,
    class, byte size and modification time (a changed, added or removed image changes it)."""
    entries = []
    for path, label in zip(folder.files, folder.labels, strict=True):
        stat = path.stat()
        entries.append([path.relative_to(folder.root).as_posix(), label, stat.st_size, stat.st_mtime_ns])
    payload = {"format": FORMAT, "vqgan": vqgan_sha256, "size": size, "classes": folder.classes, "files": entries}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@torch.inference_mode()
def encode_folder(folder: ImageFolder, vqgan: Decoder, size: int, *, fingerprint: str,
                  device: torch.device) -> Generator[Progress, None, CodeSet]:
    """Encode every readable image of ``folder`` (resized to ``size`` x ``size``), yielding
    ``Progress("encode", ...)`` per batch; the :class:`CodeSet` is the generator's return value.

    Raises:
        InputError: no image of the folder could be read.
    """
    grids, labels, files = [], [], []
    started = time.perf_counter()
    total = len(folder.files)
    for first in range(0, total, ENCODE_BATCH):
        batch, batch_labels, batch_files = [], [], []
        for index in range(first, min(first + ENCODE_BATCH, total)):
            image = folder.read(index)  # None (said once) for an unreadable image
            if image is None:
                continue
            batch.append(pil_to_tensor(cover(image, (size, size)))[0] * 2 - 1)  # (3, size, size) in [-1, 1]
            batch_labels.append(folder.labels[index])
            batch_files.append(folder.files[index].relative_to(folder.root).as_posix())
        if batch:
            pixels = torch.stack(batch).to(device)  # (B, 3, size, size)
            grids.append(vqgan.encode_to_indices(pixels).to("cpu", torch.int64))  # (B, h, w)
            labels += batch_labels
            files += batch_files
        yield Progress("encode", min(first + ENCODE_BATCH, total), total, time.perf_counter() - started)
    if not grids:
        raise InputError(f"none of the {total} images in {folder.root} could be read; "
                         "give a folder of PNG, JPEG or WebP images.")
    return CodeSet(torch.cat(grids), torch.tensor(labels, dtype=torch.int64), tuple(folder.classes), tuple(files),
                   size, fingerprint)


def save_codes(codes: CodeSet, path: Path) -> Path:
    """Write ``codes`` as a new safetensors file (never over an existing one)."""
    metadata = {"format": FORMAT, "fingerprint": codes.fingerprint, "size": str(codes.size),
                "classes": json.dumps(list(codes.classes)), "files": json.dumps(list(codes.files))}
    data = save_safetensors({"codes": codes.codes.to(torch.int32).contiguous(),
                             "labels": codes.labels.contiguous()}, metadata=metadata)
    return write_bytes_atomic(Path(path), data)


def load_codes(path: Path) -> CodeSet:
    """Read a file :func:`save_codes` wrote.

    Raises:
        InputError: the file is missing, damaged or not a codes file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = load_safetensors(data)
        with safe_open(path, framework="pt") as opened:
            metadata = opened.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError("not a codes file")
        return CodeSet(tensors["codes"].to(torch.int64), tensors["labels"].to(torch.int64),
                       tuple(json.loads(metadata["classes"])), tuple(json.loads(metadata["files"])),
                       int(metadata["size"]), metadata["fingerprint"])
    except (OSError, SafetensorError, ValueError, KeyError) as error:
        raise InputError(f"the encoded images {path} cannot be read ({type(error).__name__}); delete the file "
                         "to encode the images again.") from None


def read_fingerprint(path: Path) -> str | None:
    """The fingerprint in a codes file's header, or None for a file that is not one."""
    try:
        with safe_open(path, framework="pt") as opened:
            metadata = opened.metadata() or {}
    except (OSError, SafetensorError, ValueError):
        return None
    return metadata.get("fingerprint") if metadata.get("format") == FORMAT else None


def find_cached_codes(out_dir: Path, fingerprint: str, pattern: str = "*/" + CODES_FILE) -> Path | None:
    """The newest codes file under ``out_dir`` (one folder deep) with this fingerprint, or None."""
    found = [path for path in Path(out_dir).glob(pattern) if path.is_file()] if Path(out_dir).is_dir() else []
    for path in sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        if read_fingerprint(path) == fingerprint:
            return path
    return None
