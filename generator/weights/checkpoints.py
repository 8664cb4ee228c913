"""Read checkpoints of every supported format, safely: nothing in a file runs, and no file can
crash the process, poison later loads, exhaust its memory or time, or show its heap.

Formats: Lightning ``.ckpt`` and PyTorch ``.pth``/``.pt``/``.bin`` files (zip archives, or the
pre-1.6 format), TorchScript archives (OpenAI's CLIP ``.pt``) and ``.safetensors``.

For pickles the order is: the container is checked first (zip members: one pickle, no
duplicate names, declared sizes within :data:`SIZE_FACTOR` times the file's size plus
:data:`ALLOWANCE`, checked before anything is inflated); the pickle is scanned statically
(:mod:`generator.weights.pickle_scan`: unsafe globals refused, memory, nesting and claimed
storage bytes bounded); then torch's own ``weights_only`` unpickler reads it, with the
foreign classes the scan found mapped to inert stubs (:mod:`generator.weights.safe_unpickle`).
Tensors must fit inside their storages (torch checks). Every failure is one
:class:`CheckpointError` sentence; text from the file is shown escaped and cut short.

Peak memory while reading a file is bounded by about ``SIZE_FACTOR`` times its size plus the
allowance; the hostile-file tests check it (tests/weights/test_hostile_checkpoints.py).
"""

from __future__ import annotations

import io
import logging
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

from generator.errors import CheckpointError
from generator.weights.pickle_scan import ScanResult, scan_pickle, shown
from generator.weights.safe_unpickle import check_global, load_torchscript, stubs_allowed

logger = logging.getLogger(__name__)

SIZE_FACTOR = 2  # a zip's members may inflate to twice the file's size (stored checkpoints: once) ...
ALLOWANCE = 64 * 2**20  # ... plus this; the pickle's objects get the file's size plus this
LEGACY_PICKLES = 5  # pre-1.6 files: magic number, protocol, system info, the object, storage keys


def read_checkpoint(path: str | Path) -> Any:
    """Load the object stored in a checkpoint file, on the CPU, without running its code.

    Raises:
        CheckpointError: the file is missing, empty, a web page, truncated, corrupt, or
            crafted to exhaust memory or time.
        UnsafeCheckpointError: its pickle tries to run code (nothing was run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path.")
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head:
        raise CheckpointError(f"{path} is empty; download it again.")
    if head.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")):
        raise CheckpointError(
            f"{path} is a web page, not a checkpoint (the download link returned HTML); "
            "download the file itself again."
        )
    if path.suffix == ".safetensors":
        try:
            return load_safetensors(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise _corrupt(path, error) from None
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        if tarfile.is_tarfile(path):
            raise CheckpointError(f"{path} uses PyTorch's pre-0.4 tar format, which cannot be read safely; "
                                  "re-save its state dict with a current PyTorch.")
        return _read_legacy(path)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{path} needs more memory to read than this machine has; "
                              "check that it is the right file.") from None
    except Exception as error:  # torch, zipfile and numpy raise many types for damaged files
        raise _corrupt(path, error) from None


def _corrupt(path: Path, error: BaseException) -> CheckpointError:
    lines = str(error).strip().splitlines()
    reason = shown(lines[0] if lines else type(error).__name__, 120)
    return CheckpointError(f"{path} is truncated or corrupt ({reason}); download it again.")


def _scan(stream: io.BufferedIOBase, path: Path, budget: int) -> ScanResult:
    return scan_pickle(stream, path.name, budget=budget,
                       check_global=lambda module, name, called: check_global(module, name, called, source=path.name))


def _read_zip(path: Path) -> Any:
    size = path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise CheckpointError(f"{path} holds two files of the same name, which a checkpoint never does, "
                                  "so it was not loaded; download it again from the official source.")
        declared = sum(info.file_size for info in infos)
        if declared > SIZE_FACTOR * size + ALLOWANCE:
            raise CheckpointError(f"{path} claims to unpack to {declared / 2**30:.1f} GiB from "
                                  f"{size / 2**20:.1f} MiB, which no checkpoint does, so it was not loaded; "
                                  "download it again from the official source.")
        pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{path} is a zip file but not a PyTorch checkpoint (it has "
                                  f"{'no' if not pickles else 'more than one'} data.pkl); check that you picked "
                                  "the right file.")
        prefix = pickles[0].removesuffix("data.pkl")
        data = archive.read(pickles[0])
        scan = _scan(io.BytesIO(data), path, size + ALLOWANCE)
        for key, claimed in scan.storage_bytes.items():
            record = f"{prefix}data/{key}"
            if record not in names:
                raise CheckpointError(f"{path} is truncated or corrupt (storage {shown(key)} is missing); "
                                      "download it again.")
            if claimed > archive.getinfo(record).file_size:
                raise CheckpointError(f"{path} has a tensor storage that claims more bytes than the file holds "
                                      f"(storage {shown(key)}), so it was not loaded; download it again.")
        if f"{prefix}constants.pkl" in names or any(name.startswith(f"{prefix}code/") for name in names):
            return load_torchscript(archive, prefix, data, scan)
        # Older archives store compressed records, which cannot be memory-mapped.
        mmap = all(info.compress_type == zipfile.ZIP_STORED for info in infos)
    with stubs_allowed(scan), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes on protocols and storages are not the user's business
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _read_legacy(path: Path) -> Any:
    """A pre-1.6 file: a sequence of pickles (the object and its storage keys among them)
    followed by raw storage bytes. Each pickle is scanned to its end."""
    size = path.stat().st_size
    merged = ScanResult()
    with path.open("rb") as handle:
        stream = io.BufferedReader(handle)
        for _ in range(LEGACY_PICKLES):
            if not stream.peek(1):
                break  # a bare pickle: torch says it lacks the magic number
            scan = _scan(stream, path, size + ALLOWANCE)
            for key, value in scan.globals.items():
                use = merged.globals.setdefault(key, value)
                use.called, use.items = use.called or value.called, use.items or value.items
                use.appended, use.built = use.appended or value.appended, use.built or value.built
            merged.storage_bytes.update(scan.storage_bytes)
    if sum(merged.storage_bytes.values()) > size:
        raise CheckpointError(f"{path} has tensor storages that claim more bytes than the file holds, so it was "
                              "not loaded; download it again.")
    with stubs_allowed(merged), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)

