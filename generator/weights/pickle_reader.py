"""Parse a pickled checkpoint held in memory: Lightning ``.ckpt`` and PyTorch ``.pth``/``.pt``
files (zip archives or the pre-1.6 format) and TorchScript archives (OpenAI's CLIP ``.pt``).

Runs only inside the limited child process (:mod:`generator.weights.safe_copy`); the serving
process never unpickles anything. The container is checked first and must be what torch would
take it for: a zip only when it starts as one (a pickle with a zip appended is refused), with
member names unique even ignoring case, exactly one ``data.pkl`` in the archive's folder, and
declared sizes within :data:`SIZE_FACTOR` times the file plus :data:`ALLOWANCE`. The pickle is
scanned statically (:mod:`generator.weights.pickle_scan`); then torch's own ``weights_only``
unpickler reads those very bytes, foreign classes mapped to inert stubs
(:mod:`generator.weights.safe_unpickle`). Every failure is one :class:`CheckpointError`.
"""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile
from typing import Any

import torch

from generator.errors import CheckpointError
from generator.weights.pickle_scan import ScanResult, scan_pickle, shown
from generator.weights.safe_unpickle import check_global, stubs_allowed, unpickle_zip

SIZE_FACTOR = 2  # a zip's members may inflate to twice the file's size (stored checkpoints: once) ...
ALLOWANCE = 64 * 2**20  # ... plus this; the pickle's objects get the file's size plus this
LEGACY_PICKLES = 5  # pre-1.6 files: magic number, protocol, system info, the object, storage keys
ZIP_MAGIC = b"PK\x03\x04"


def read_pickled(data: bytes, name: str) -> Any:
    """The object a pickled checkpoint holds, on the CPU, without running its code.

    Args:
        data: the whole file.
        name: its name, for messages.

    Raises:
        CheckpointError: truncated, corrupt, not a checkpoint, or crafted to exhaust memory or time.
        UnsafeCheckpointError: its pickle tries to run code (nothing was run).
    """
    try:
        if data.startswith(ZIP_MAGIC):
            return _read_zip(data, name)
        if zipfile.is_zipfile(io.BytesIO(data)):
            raise CheckpointError(f"{name} is a pickle with a zip archive appended, which torch and a checker "
                                  "would read differently, so it was not loaded; download it again from the "
                                  "official source.")
        if _is_tar(data):
            raise CheckpointError(f"{name} uses PyTorch's pre-0.4 tar format, which cannot be read safely; "
                                  "re-save its state dict with a current PyTorch.")
        return _read_legacy(data, name)
    except CheckpointError:
        raise
    except MemoryError:
        raise
    except Exception as error:  # torch, zipfile and numpy raise many types for damaged files
        raise corrupt(name, error) from None


def corrupt(name: str, error: BaseException) -> CheckpointError:
    """The sentence for a file a parser choked on."""
    lines = str(error).strip().splitlines()
    reason = shown(lines[0] if lines else type(error).__name__, 120)
    return CheckpointError(f"{name} is truncated or corrupt ({reason}); download it again.")


def _is_tar(data: bytes) -> bool:
    try:
        return tarfile.is_tarfile(io.BytesIO(data))
    except (OSError, ValueError):
        return False


def _scan(stream: io.BufferedIOBase, name: str, budget: int) -> ScanResult:
    return scan_pickle(stream, name, budget=budget,
                       check_global=lambda module, glob, called: check_global(module, glob, called, source=name))


def _read_zip(data: bytes, name: str) -> Any:
    size = len(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if not infos or infos[0].header_offset != 0:
            raise CheckpointError(f"{name} has data before its zip archive, which torch and a checker would read "
                                  "differently, so it was not loaded; download it again.")
        if len({entry.lower() for entry in names}) != len(names):
            raise CheckpointError(f"{name} holds two files of the same name (ignoring case), which a checkpoint "
                                  "never does, so it was not loaded; download it again from the official source.")
        declared = sum(info.file_size for info in infos)
        if declared > SIZE_FACTOR * size + ALLOWANCE:
            raise CheckpointError(f"{name} claims to unpack to {declared / 2**30:.1f} GiB from "
                                  f"{size / 2**20:.1f} MiB, which no checkpoint does, so it was not loaded; "
                                  "download it again from the official source.")
        folder = names[0].split("/", 1)[0]
        pickles = [entry for entry in names if entry.lower().rsplit("/", 1)[-1] == "data.pkl"]
        if pickles != [f"{folder}/data.pkl"]:
            raise CheckpointError(f"{name} is a zip file but not a PyTorch checkpoint (it needs one data.pkl in "
                                  f"its archive folder and has {len(pickles)}); check that you picked the right file.")
        prefix = f"{folder}/"
        byteorder = f"{prefix}byteorder"
        if byteorder in names and archive.read(byteorder).strip() not in (b"", b"little"):
            raise CheckpointError(f"{name} was saved on a big-endian machine, which is not supported; re-save it "
                                  "on a usual (little-endian) computer.")
        pickle = archive.read(pickles[0])
        scan = _scan(io.BytesIO(pickle), name, size + ALLOWANCE)
        for key, claimed in scan.storage_bytes.items():
            record = f"{prefix}data/{key}"
            if record not in names:
                raise CheckpointError(f"{name} is truncated or corrupt (storage {shown(key)} is missing); "
                                      "download it again.")
            if claimed > archive.getinfo(record).file_size:
                raise CheckpointError(f"{name} has a tensor storage that claims more bytes than the file holds "
                                      f"(storage {shown(key)}), so it was not loaded; download it again.")
        return unpickle_zip(archive, prefix, pickle, scan)


def _read_legacy(data: bytes, name: str) -> Any:
    """A pre-1.6 file: a sequence of pickles (the object and its storage keys among them)
    followed by raw storage bytes. Each pickle is scanned to its end; torch then reads the
    same bytes."""
    size = len(data)
    merged = ScanResult()
    stream = io.BytesIO(data)
    for _ in range(LEGACY_PICKLES):
        if stream.tell() >= size:
            break  # a bare pickle: torch says it lacks the magic number
        scan = _scan(stream, name, size + ALLOWANCE)
        for key, value in scan.globals.items():
            use = merged.globals.setdefault(key, value)
            use.called, use.items = use.called or value.called, use.items or value.items
            use.appended, use.built = use.appended or value.appended, use.built or value.built
        merged.storage_bytes.update(scan.storage_bytes)
    if sum(merged.storage_bytes.values()) > size:
        raise CheckpointError(f"{name} has tensor storages that claim more bytes than the file holds, so it was "
                              "not loaded; download it again.")
    with stubs_allowed(merged), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
