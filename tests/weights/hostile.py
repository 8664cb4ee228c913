"""Hostile checkpoints built opcode by opcode: a small protocol-2 pickle assembler and the
files of every attack the safe reader must withstand (see issue: crash, poison, exhaust,
disclose, raw exceptions, escapes), plus legitimate Lightning variants."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch


class Pickle:
    """Protocol-2 opcodes, appended in order; ``bytes(p)`` is the pickle."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def __bytes__(self) -> bytes:
        return bytes(self.out)

    def raw(self, data: bytes) -> Pickle:
        self.out += data
        return self

    def glob(self, module: str, name: str) -> Pickle:
        return self.raw(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def text(self, value: str) -> Pickle:
        data = value.encode("utf-8")
        return self.raw(b"X" + struct.pack("<I", len(data)) + data)

    def blob(self, value: bytes) -> Pickle:
        assert len(value) < 256
        return self.raw(b"U" + bytes([len(value)]) + value)

    def int(self, value: int) -> Pickle:
        if 0 <= value < 256:
            return self.raw(b"K" + bytes([value]))
        if -(2**31) <= value < 2**31:
            return self.raw(b"J" + struct.pack("<i", value))
        data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        return self.raw(b"\x8a" + bytes([len(data)]) + data)

    def none(self) -> Pickle:
        return self.raw(b"N")

    def mark(self) -> Pickle:
        return self.raw(b"(")

    def tuple(self, count: int | None = None) -> Pickle:
        return self.raw({None: b"t", 0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}[count])

    def empty_dict(self) -> Pickle:
        return self.raw(b"}")

    def empty_list(self) -> Pickle:
        return self.raw(b"]")

    def setitem(self) -> Pickle:
        return self.raw(b"s")

    def setitems(self) -> Pickle:
        return self.raw(b"u")

    def append(self) -> Pickle:
        return self.raw(b"a")

    def appends(self) -> Pickle:
        return self.raw(b"e")

    def reduce(self) -> Pickle:
        return self.raw(b"R")

    def newobj(self) -> Pickle:
        return self.raw(b"\x81")

    def build(self) -> Pickle:
        return self.raw(b"b")

    def put(self, index: int) -> Pickle:
        return self.raw(b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index))

    def get(self, index: int) -> Pickle:
        return self.raw(b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index))

    def persid(self) -> Pickle:
        return self.raw(b"Q")

    def stop(self) -> Pickle:
        return self.raw(b".")

    # --- composites ---------------------------------------------------------------------

    def tensor(self, key: str, numel: int, size: tuple[int, ...], storage: str = "FloatStorage") -> Pickle:
        """``torch._utils._rebuild_tensor_v2`` of storage ``key`` (``numel`` elements)."""
        self.glob("torch._utils", "_rebuild_tensor_v2").mark()
        self.mark().text("storage").glob("torch", storage).text(key).text("cpu").int(numel).tuple().persid()
        self.int(0)
        self.mark()
        for side in size:
            self.int(side)
        self.tuple()
        stride, strides = 1, []
        for side in reversed(size):
            strides.insert(0, stride)
            stride *= side
        self.mark()
        for step in strides:
            self.int(step)
        self.tuple()
        self.raw(b"\x89").glob("collections", "OrderedDict").tuple(0).reduce().tuple().reduce()
        return self

    def state_dict_around(self, body: Callable[[Pickle], None], weight_numel: int = 4) -> Pickle:
        """``{"state_dict": {"w": tensor}, "payload": <body>}``."""
        self.empty_dict().mark()
        self.text("state_dict").empty_dict().text("w").tensor("0", weight_numel, (weight_numel,)).setitem()
        self.text("payload")
        body(self)
        return self.setitems().stop()


def torch_zip(path: Path, data_pkl: bytes, records: dict[str, bytes] | None = None, *,
              compress: bool = False) -> Path:
    """A zip laid out as ``torch.save`` writes it, with ``data_pkl`` as its pickle."""
    records = {"0": struct.pack("<4f", 0.0, 1.0, 2.0, 3.0)} if records is None else records
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        for key, data in records.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


def plain_checkpoint(path: Path, body: Callable[[Pickle], None]) -> Path:
    """A zip checkpoint with a 4-float state dict and ``body`` as its payload."""
    pickle = Pickle()
    pickle.state_dict_around(body)
    return torch_zip(path, bytes(pickle))


def legacy_checkpoint(path: Path, main: bytes) -> Path:
    """A pre-1.6 file: magic number, protocol, system info, ``main``, storage keys, data."""
    magic = Pickle().int(0x1950A86A20F9469CFC6C).stop()
    protocol = Pickle().int(1001).stop()
    info = Pickle().empty_dict().mark().text("little_endian").raw(b"\x88").setitems().stop()
    keys = Pickle().empty_list().mark().text("0").appends().stop()
    data = struct.pack("<q", 4) + struct.pack("<4f", 0.0, 1.0, 2.0, 3.0)
    path.write_bytes(bytes(magic) + bytes(protocol) + bytes(info) + main + bytes(keys) + data)
    return path


def nested_shared(pickle: Pickle, levels: int, *, tuples: bool) -> None:
    """Push a structure of ``2 ** levels`` leaves made of ``levels`` objects: each level holds
    the one below twice (memo references), as tuples (hashable) or lists. The levels stay on
    the stack below it."""
    if tuples:
        pickle.int(1).tuple(1)
    else:
        pickle.empty_list()
    for level in range(levels):
        pickle.put(level)
        if tuples:
            pickle.get(level).get(level).tuple(2)
        else:
            pickle.empty_list().mark().get(level).get(level).appends()


def torch_bytes(obj: object) -> bytes:
    """What ``torch.save`` writes for ``obj`` (a legitimate reference file)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
