"""Unpickle PyTorch checkpoints with torch's own ``weights_only`` unpickler, foreign classes
mapped to inert stubs, after a static scan has vetted the pickle.

Official Taming Transformers ``.ckpt`` files are PyTorch Lightning pickles that name classes
we do not have (the ``ModelCheckpoint`` callback, an ``AttributeDict`` or
``argparse.Namespace`` of hyper-parameters, numpy scalars). ``torch.load(weights_only=True)``
refuses them; torch's safe-globals mechanism accepts a name for an object, so each such name
is mapped, for the duration of one load, to a fresh stub class made for that load:

* a class whose objects get items (a dict subclass such as ``AttributeDict``,
  ``collections.defaultdict``) becomes a plain ``dict``; one whose objects get elements
  becomes a plain ``list``;
* anything else becomes a :class:`Stub`: instances record their constructor arguments
  (``stub_args``) and attribute state (``stub_state``); nothing of the original class is
  imported or run.

Globals from modules that have no business in a checkpoint (``os``, ``subprocess``,
``builtins.eval`` ...; submodules included) and calls of functions the loader does not know
are refused (:class:`UnsafeCheckpointError`) by :func:`check_global` during the scan, before
torch reads the file. torch parses everything; the only home-made part is the storage reader
of zip archives (:func:`unpickle_zip`): the pickle the scan vetted goes through torch's
unpickler class with a persistent-load function that reads each storage from the zip once,
bounded by its recorded size (this also reads TorchScript archives such as OpenAI's CLIP
``.pt`` files, which ``torch.load(weights_only=True)`` refuses outright). All of this runs only
in the limited child process of :mod:`generator.weights.sandbox`.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

import torch
from torch import _weights_only_unpickler

from generator.errors import CheckpointError, UnsafeCheckpointError
from generator.weights.pickle_scan import ScanResult, shown

# Globals from these modules (and their submodules) are refused on sight: no legitimate
# checkpoint refers to them, and they are the building blocks of pickle exploits.
FORBIDDEN_MODULES = frozenset({
    "__builtin__", "_io", "_pickle", "_posixsubprocess", "_thread", "asyncio", "bdb", "code", "codeop", "commands",
    "ctypes", "functools", "gc", "glob", "http", "importlib", "inspect", "io", "marshal", "multiprocessing", "nt",
    "ntpath", "operator", "os", "pdb", "pickle", "platform", "posix", "posixpath", "pty", "requests", "runpy",
    "shutil", "signal", "socket", "subprocess", "sys", "tempfile", "threading", "timeit", "trace", "types",
    "urllib", "webbrowser", "zipimport",
    "torch.hub", "torch.ops", "torch._C", "torch.jit", "torch.serialization", "torch.utils.cpp_extension",
    "torch._dynamo", "torch._inductor", "numpy.testing", "numpy.lib.npyio", "numpy.ctypeslib", "numpy.f2py",
})
# Builtins that merely name a type (as a defaultdict's factory, say); stubbed, never called.
SAFE_BUILTINS = frozenset({"bool", "bytes", "dict", "float", "frozenset", "int", "list", "object", "range",
                           "slice", "str", "tuple"})
# Functions whose calls are inert once stubbed (numpy scalars and arrays, copyreg's
# protocol 0/1 object rebuilding, a defaultdict) or harmless helpers of TorchScript pickles.
KNOWN_CALLS = frozenset({
    ("copyreg", "_reconstructor"), ("collections", "defaultdict"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("torch.jit._pickle", "restore_type_tag"), ("torch.jit._pickle", "build_intlist"),
    ("torch.jit._pickle", "build_doublelist"), ("torch.jit._pickle", "build_boollist"),
    ("torch.jit._pickle", "build_tensorlist"),
})
# Names under torch.serialization/jit that are data, not actions (torch allows the first itself).
_TORCH_HELPERS = frozenset({("torch.serialization", "_get_layout"), *((m, n) for m, n in KNOWN_CALLS
                                                                       if m == "torch.jit._pickle")})
# torch's allow-list is shared process state; loads take turns so that each load's stubs are its own.
_LOAD_LOCK = threading.Lock()


class _StubMeta(type):
    """Metaclass of stubs: calling a stub class gives a fresh record (or a plain container)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.__new__(cls, *args)

    def __repr__(cls) -> str:
        return f"<stub {cls.__qualname__}>"


class Stub(metaclass=_StubMeta):
    """Inert record of an object whose class the loader does not have.

    ``stub_args`` holds the constructor arguments the pickle gave, ``stub_state`` the state
    it set. Nothing of the original class is imported or run.
    """

    flavour = "object"
    stub_args: tuple = ()
    stub_state: Any = None

    def __new__(cls, *args: Any) -> Any:
        if cls.flavour == "dict":
            return {}
        if cls.flavour == "list":
            return []
        instance = object.__new__(cls)
        instance.stub_args = args
        return instance

    def __setstate__(self, state: Any) -> None:
        self.stub_state = state

    def __repr__(self) -> str:
        return f"<stub instance of {type(self).__qualname__}>"


def _stub_class(module: str, name: str, flavour: str) -> type:
    stub = _StubMeta(name, (Stub,), {"__module__": "generator.weights.safe_unpickle.stubs", "flavour": flavour})
    stub.__qualname__ = f"{module}.{name}"
    return stub


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg's protocol 0/1 object rebuilding, for stub classes only (the scan made sure)."""
    if not isinstance(cls, _StubMeta):
        raise CheckpointError("a checkpoint rebuilt an object of a class that is not a stub")
    return cls.__new__(cls)


def _identity(value: Any, *_: Any) -> Any:
    return value


def _forbidden(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[: i + 1]) in FORBIDDEN_MODULES for i in range(len(parts)))


def check_global(module: str, name: str, called: bool, *, source: str) -> None:
    """Refuse a global no checkpoint needs, or the call of a function the loader does not know.

    Args:
        called: the pickle calls it (REDUCE or NEWOBJ), rather than only naming it.
        source: the file name, for the message.

    Raises:
        UnsafeCheckpointError: the global (or the call) is refused; nothing has run.
    """
    full = f"{module}.{name}"
    if full in _torch_allowed() or (module, name) in _TORCH_HELPERS:
        return
    if module == "builtins":
        refused = name not in SAFE_BUILTINS  # a safe builtin is a stub: even a call of it is inert
    else:
        refused = _forbidden(module) or (called and not name[:1].isupper() and (module, name) not in KNOWN_CALLS)
    if refused:
        raise UnsafeCheckpointError(f"{source} tries to use {shown(full)} while loading, which a checkpoint has "
                                    "no reason to do, so it was refused and nothing from it was run; only use "
                                    "checkpoints from sources you trust.")


def _torch_allowed() -> dict[str, Any]:
    return _weights_only_unpickler._get_allowed_globals()


def stubs_for(scan: ScanResult) -> list[tuple[Any, str]]:
    """(object, name) pairs for torch's safe-globals list: a fresh stub (or harmless helper)
    for every global the scan found that torch does not allow by itself."""
    allowed = _torch_allowed()
    pairs: list[tuple[Any, str]] = []
    for (module, name), use in scan.globals.items():
        full = f"{module}.{name}"
        if full in allowed:
            continue
        if (module, name) == ("copyreg", "_reconstructor"):
            pairs.append((_reconstructor, full))
        elif module == "torch.jit._pickle":
            pairs.append((_identity, full))
        else:
            if (use.items or use.appended) and use.built:
                raise CheckpointError(f"the checkpoint stores a {shown(full)} that is both a container and an "
                                      "object with attributes, which cannot be read safely; re-save its state "
                                      "dict with a current PyTorch.")
            flavour = "dict" if use.items else "list" if use.appended else "object"
            pairs.append((_stub_class(module, name, flavour), full))
    return pairs


@contextlib.contextmanager
def stubs_allowed(scan: ScanResult) -> Iterator[None]:
    """torch's unpickler accepts this load's stubs, and only while the block runs."""
    pairs = stubs_for(scan)
    with _LOAD_LOCK, torch.serialization.safe_globals(pairs):
        yield


def _record_storage(archive: zipfile.ZipFile, name: str) -> torch.UntypedStorage:
    """The bytes of one zip record as a storage that cannot be resized: a tensor claiming more
    than the record holds is refused by torch (a resizable one would grow to fit, with bytes
    that are not the file's), as torch's own zip reader does."""
    info = archive.getinfo(name)
    buffer = bytearray(max(1, info.file_size))  # frombuffer needs a byte; an empty record gets a zero one
    with archive.open(info) as record:
        if record.readinto(buffer) != info.file_size:
            raise CheckpointError(f"storage {shown(name)} is shorter than its zip entry says")
    return torch.frombuffer(buffer, dtype=torch.uint8).untyped_storage()


def unpickle_zip(archive: zipfile.ZipFile, prefix: str, data: bytes, scan: ScanResult) -> Any:
    """The object of a zip checkpoint (``torch.save``'s format, or a TorchScript archive): the
    pickle ``data`` that the scan vetted, read by torch's own ``weights_only`` unpickler class
    with this load's stubs and a storage reader over ``archive``. So the bytes scanned are the
    bytes loaded, and each storage is read once (bounded by its recorded size) however often
    the pickle refers to it. TorchScript modules come back as stubs whose state holds the tensors.
    """
    storages: dict[str, Any] = {}

    def persistent_load(pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError("the archive refers to external data other than tensor storages")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        dtype = getattr(storage_type, "dtype", torch.uint8)
        if key not in storages:
            storages[key] = _record_storage(archive, f"{prefix}data/{key}")
        if storages[key].nbytes() < numel * torch.empty((), dtype=dtype).element_size():
            raise CheckpointError(f"storage {shown(key)} holds fewer bytes than its tensors need")
        return torch.storage.TypedStorage(wrap_storage=storages[key], dtype=dtype, _internal=True)

    unpickler = _weights_only_unpickler.Unpickler(io.BytesIO(data), encoding="utf-8")
    unpickler.persistent_load = persistent_load
    with stubs_allowed(scan), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note that it validates sparse tensors
        loaded = unpickler.load()
        torch._utils._validate_loaded_sparse_tensors(weights_only=True)  # indices in range, as torch.load checks
    return loaded
