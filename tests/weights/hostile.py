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


def member(name: str) -> zipfile.ZipInfo:
    """A zip entry with a fixed date, so a file built twice has the same bytes (and digest)."""
    return zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))


def torch_zip(path: Path, data_pkl: bytes, records: dict[str, bytes] | None = None, *,
              compress: bool = False) -> Path:
    """A zip laid out as ``torch.save`` writes it, with ``data_pkl`` as its pickle."""
    records = {"0": struct.pack("<4f", 0.0, 1.0, 2.0, 3.0)} if records is None else records
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr(member("archive/data.pkl"), data_pkl, method)
        archive.writestr(member("archive/byteorder"), "little", method)
        for key, data in records.items():
            archive.writestr(member(f"archive/data/{key}"), data, method)
        archive.writestr(member("archive/version"), "3\n", method)
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


# --- round 2: files that would hang, exhaust or confuse the reader ----------------------------

def shared_tuple(pickle: Pickle, levels: int) -> None:
    """Push one tuple holding every level of :func:`nested_shared` (hashing it takes 2**levels steps)."""
    pickle.mark()
    nested_shared(pickle, levels, tuples=True)
    pickle.tuple()


def call_with_list(module: str, name: str, fill: Callable[[Pickle], None]) -> Callable[[Pickle], None]:
    """A payload ``module.name([<what fill pushes, appended>])``: a constructor torch allows, fed a list."""
    def body(pickle: Pickle) -> None:
        pickle.glob(module, name).empty_list().mark()
        fill(pickle)
        pickle.appends().tuple(1).reduce()
    return body


def colliding_ints(pickle: Pickle, count: int = 150_000) -> None:
    """``count`` integers that all hash alike (multiples of 2**61 - 1, Python's hash modulus)."""
    for index in range(1, count):
        pickle.int(index * (2**61 - 1))


def dict_of_colliding_keys(pickle: Pickle, count: int = 150_000) -> None:
    """A dict whose ``count`` integer keys all hash alike (inserting them takes count**2 steps)."""
    pickle.empty_dict().mark()
    for index in range(1, count):
        pickle.int(index * (2**61 - 1)).none()
    pickle.setitems()


def slow_codec(pickle: Pickle) -> None:
    """``bytearray(<50,000 distinct non-ASCII characters>, "punycode")``: quadratic in its length."""
    pickle.glob("builtins", "bytearray").text("".join(chr(0x100 + i) for i in range(50_000))).text("punycode")
    pickle.tuple(2).reduce()


def bytearray_through_rebuild(pickle: Pickle) -> None:
    """``torch._tensor._rebuild_from_type_v2(bytearray, bytearray, (2**33,), {})``: 8 GiB from a few bytes."""
    pickle.glob("torch._tensor", "_rebuild_from_type_v2").mark()
    pickle.glob("builtins", "bytearray").glob("builtins", "bytearray").int(2**33).tuple(1).empty_dict().tuple()
    pickle.reduce()


def repeated_record(path: Path, references: int = 60, side: int = 2048) -> Path:
    """A TorchScript archive whose one deflated record (``side``**2 floats of zeros, a few KB in
    the file) backs ``references`` tensors."""
    pickle = Pickle().glob("__torch__.model", "Net").tuple(0).newobj().empty_dict().mark()
    for index in range(references):
        pickle.text(f"w{index}").tensor("0", side * side, (side, side))
    pickle.setitems().build().stop()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member("archive/data.pkl"), bytes(pickle))
        archive.writestr(member("archive/constants.pkl"), bytes(Pickle().tuple(0).stop()))
        archive.writestr(member("archive/data/0"), b"\x00" * (4 * side * side), zipfile.ZIP_DEFLATED)
        archive.writestr(member("archive/version"), "3\n")
    return path


def stride_zero_upscaler(path: Path) -> Path:
    """A few-KB SRVGG-shaped file whose tensors are one value repeated (stride 0) over a full shape."""
    state = {"body.0.weight": torch.zeros(1).expand(64, 3, 3, 3), "body.0.bias": torch.zeros(1).expand(64),
             "body.1.weight": torch.zeros(1).expand(64)}
    for index in range(2, 66, 2):
        state[f"body.{index}.weight"] = torch.zeros(1).expand(64, 64, 3, 3)
        state[f"body.{index}.bias"] = torch.zeros(1).expand(64)
        state[f"body.{index + 1}.weight"] = torch.zeros(1).expand(64)
    state["body.66.weight"] = torch.zeros(1).expand(48, 64, 3, 3)
    state["body.66.bias"] = torch.zeros(1).expand(48)
    torch.save({"params": state}, path)
    return path


def meta_tensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A state dict of ``meta`` tensors (shapes without data) under ``state_dict``."""
    torch.save({"state_dict": {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}}, path)
    return path


def legacy_with_zip_appended(path: Path) -> Path:
    """A pre-1.6 checkpoint whose pickle calls ``posix.system``, followed by a harmless zip checkpoint."""
    main = Pickle().empty_dict().mark().text("w").tensor("0", 4, (4,))
    main.text("payload").glob("posix", "system").text("touch /tmp/pwned").tuple(1).reduce().setitems().stop()
    legacy_checkpoint(path, bytes(main))
    harmless = torch_bytes({"state_dict": {"w": torch.ones(4)}})
    path.write_bytes(path.read_bytes() + harmless)
    return path


def pickles_differing_in_case(path: Path) -> Path:
    """An archive with a harmless ``archive/data.pkl`` and a hostile ``archive/DATA.pkl``."""
    torch_zip(path, bytes(Pickle().state_dict_around(lambda p: p.none())))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(member("archive/DATA.pkl"), bytes(Pickle().glob("posix", "system").text("id").tuple(1)
                                                            .reduce().stop()))
    return path


def spread_zip_bomb(path: Path, members: int = 8, each: int = 48 * 2**20) -> Path:
    """Several deflated records of zeros, each under the cap, together far over it (a few KB each)."""
    records = {"0": struct.pack("<4f", 0.0, 1.0, 2.0, 3.0)} | {str(i): b"\x00" * each for i in range(1, members + 1)}
    return torch_zip(path, bytes(Pickle().state_dict_around(lambda p: p.none())), records, compress=True)
