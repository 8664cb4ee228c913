"""safetensors files, read into private memory after their header is checked, and written.

This is the only format the serving process reads weights from: user ``.safetensors`` files
as they are, pickled checkpoints as the copy a limited child process made of them
(:mod:`generator.weights.sandbox`). Opening a file reads and checks its header only: every
tensor's dtype is known, its shape gives exactly the bytes of its byte range, and the ranges
tile the data section in order, without a gap, an overlap or a byte past the end, so no
tensor can claim more memory than the file holds. The header yields ``meta`` tensors (shapes
and dtypes, no data) for the model's shape checks; :meth:`TensorFile.read` then copies the
bytes of the tensors asked for into fresh memory. Nothing is memory-mapped, so a file that is
rewritten or truncated later changes nothing already read (a truncation while reading is one
sentence, never a SIGBUS).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from generator.errors import CheckpointError
from generator.weights.pickle_scan import shown

MAX_HEADER = 100 * 2**20  # the safetensors library refuses larger headers too
MAX_DIMS = 16
METADATA_KEY = "__metadata__"
DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "U16": torch.uint16,
    "I32": torch.int32, "U32": torch.uint32, "I64": torch.int64, "U64": torch.uint64, "F16": torch.float16,
    "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64, "C64": torch.complex64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclass(frozen=True)
class TensorRecord:
    """Where one tensor's bytes are: ``[begin, end)`` of the data section."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


class TensorFile:
    """A safetensors file whose header has been checked; tensors are read on request.

    Attributes:
        path: the file.
        source: the name used in messages (the user's file, for a safe copy).
        records: every tensor's record by name.
        metadata: the header's ``__metadata__`` (strings only).
    """

    def __init__(self, path: str | os.PathLike[str], *, source: str | None = None):
        self.path = Path(path)
        self.source = source or self.path.name
        self._handle: BinaryIO | None = None
        try:
            self._handle = open(self.path, "rb")  # noqa: SIM115 - held until close(), so the inode stays the same
            self._size = os.fstat(self._handle.fileno()).st_size
            self.records, self.metadata, self._data_start = self._read_header()
        except OSError as error:
            self.close()
            raise CheckpointError(f"cannot read {self.source} ({error.strerror or type(error).__name__}); "
                                  "check the file and its permissions.") from None
        except CheckpointError:
            self.close()
            raise
        self._meta: dict[int, tuple[torch.Tensor, TensorRecord]] = {}  # kept alive, so ids stay unique

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the file (tensors already read are kept)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None:
            handle.close()

    def _corrupt(self, why: str) -> CheckpointError:
        return CheckpointError(f"{self.source} is not a valid safetensors file ({why}); download it again or "
                               "save it again with the safetensors library.")

    def _read_header(self) -> tuple[dict[str, TensorRecord], dict[str, str], int]:
        assert self._handle is not None
        prefix = self._handle.read(8)
        if len(prefix) < 8:
            raise self._corrupt("it is shorter than a header")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER, self._size - 8):
            raise self._corrupt("its header claims more bytes than the file or the format allows")
        raw = self._handle.read(length)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self._corrupt("its header is not JSON") from None
        if not isinstance(header, dict):
            raise self._corrupt("its header is not a JSON object")
        metadata = header.pop(METADATA_KEY, None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise self._corrupt("its metadata are not strings")
        data_size = self._size - 8 - length
        records = {name: self._record(name, entry, data_size) for name, entry in header.items()}
        position = 0
        for record in sorted(records.values(), key=lambda r: (r.begin, r.end)):
            if record.begin != position:
                how = "overlaps another" if record.begin < position else "leaves a gap before it"
                raise self._corrupt(f"tensor {shown(record.name)} {how}")
            position = record.end
        if position != data_size:
            raise self._corrupt(f"its tensors hold {position} bytes but its data section has {data_size}")
        return records, metadata, 8 + length

    def _record(self, name: str, entry: object, data_size: int) -> TensorRecord:
        if not isinstance(entry, dict):
            raise self._corrupt(f"the entry of {shown(name)} is not an object")
        dtype = DTYPES.get(entry.get("dtype")) if isinstance(entry.get("dtype"), str) else None
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if dtype is None:
            raise self._corrupt(f"tensor {shown(name)} has an unknown dtype {shown(str(entry.get('dtype')))}")
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS
                and all(type(side) is int and side >= 0 for side in shape)):
            raise self._corrupt(f"tensor {shown(name)} has a malformed shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise self._corrupt(f"tensor {shown(name)} has a byte range outside the file")
        numel = 1
        for side in shape:
            numel *= side
        if numel * _element_size(dtype) != offsets[1] - offsets[0]:
            raise self._corrupt(f"tensor {shown(name)} has a shape that does not match its byte range")
        return TensorRecord(name, dtype, tuple(shape), offsets[0], offsets[1])

    def meta(self, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """``meta`` tensors (shape and dtype, no data) of ``names`` (default: all), for shape
        checks; :meth:`read` accepts them back, also under other keys."""
        chosen = self.records if names is None else {name: self.records[name] for name in names}
        tensors = {}
        for name, record in chosen.items():
            tensor = torch.empty(record.shape, dtype=record.dtype, device="meta")
            self._meta[id(tensor)] = (tensor, record)
            tensors[name] = tensor
        return tensors

    def read(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Real tensors, in fresh memory, for ``meta`` tensors this file gave (:meth:`meta`),
        keys kept as given (a state dict may have renamed them); a real tensor passes as is.

        Raises:
            CheckpointError: the file changed size or ended early since it was opened.
        """
        wanted = [(key, self._meta.get(id(tensor), (None, None))[1]) for key, tensor in tensors.items()]
        out = {key: tensor for key, tensor in tensors.items() if not tensor.is_meta}
        handle = self._handle
        if handle is None:
            raise CheckpointError(f"{self.source} was closed before its tensors were read; load it again.")
        if os.fstat(handle.fileno()).st_size != self._size:
            raise self._changed()
        for key, record in sorted(((k, r) for k, r in wanted if r is not None), key=lambda item: item[1].begin):
            buffer = torch.empty(record.end - record.begin, dtype=torch.uint8)
            if record.end > record.begin:
                handle.seek(self._data_start + record.begin)
                if handle.readinto(memoryview(buffer.numpy())) != record.end - record.begin:
                    raise self._changed()
            out[key] = buffer.view(record.dtype).reshape(record.shape)
        missing = [key for key, record in wanted if record is None and tensors[key].is_meta]
        if missing:
            raise AssertionError(f"meta tensors not from {self.source}: {missing[:3]}")  # a caller bug
        return {key: out[key] for key in tensors}

    def read_all(self) -> dict[str, torch.Tensor]:
        """Every tensor of the file, by its name."""
        return self.read(self.meta())

    def _changed(self) -> CheckpointError:
        return CheckpointError(f"{self.source} changed or was truncated while it was being read; make sure nothing "
                               "writes to it, then load it again.")


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def write_tensor_file(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` as a safetensors file, streaming one tensor at a time (the memory
    taken is the largest tensor, not the whole file). Tensors must be dense CPU tensors.

    Raises:
        ValueError: a tensor that is not a dense CPU tensor, or a dtype safetensors lacks.
    """
    header: dict[str, object] = {METADATA_KEY: dict(metadata)} if metadata else {}
    position = 0
    ordered = sorted(tensors.items())
    for name, tensor in ordered:
        if tensor.layout != torch.strided or tensor.device.type != "cpu" or tensor.dtype not in DTYPE_NAMES:
            raise ValueError(f"{name}: only dense CPU tensors of safetensors dtypes can be written")
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [position, position + size]}
        position += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data section starts 8-byte aligned, as the library writes it
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for _, tensor in ordered:
            if tensor.numel():
                flat = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
                handle.write(memoryview(flat.numpy()))
