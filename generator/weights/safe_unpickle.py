"""Read a PyTorch zip checkpoint without running any code from it.

``torch.load(weights_only=True)`` refuses any pickle that mentions a class outside its
allowlist, and official Taming Transformers ``.ckpt`` files are PyTorch Lightning pickles
that may mention Lightning classes (the ``ModelCheckpoint`` callback state, an
``argparse.Namespace`` of hyper-parameters). This module is the fallback: a restricted
unpickler over the checkpoint's zip archive that

* rebuilds tensors, storages and plain containers itself;
* replaces every other global with an inert stub class: a stub can be instantiated without
  arguments (``NEWOBJ``) and filled with state (``BUILD``), so class references and object
  state load as harmless records, but nothing is ever imported or executed;
* refuses the file (:class:`UnsafeCheckpointError`) as soon as the pickle names a global
  from a module that has no business in a checkpoint (``os``, ``subprocess``, ``builtins.eval``,
  ...) or tries to *call* a function it does not know.

TorchScript archives (such as OpenAI's CLIP ``.pt`` files) are read the same way: their
module objects become stubs whose state holds the parameters.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import collections
import datetime
import pathlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import torch

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct
    from numpy.core.multiarray import scalar as _numpy_scalar

from generator.errors import CheckpointError, UnsafeCheckpointError

# Globals from these modules (and their submodules) are refused on sight: no legitimate
# checkpoint refers to them, and they are the building blocks of pickle exploits.
_FORBIDDEN_MODULES = frozenset({
    "__builtin__", "__main__", "_io", "_pickle", "_thread", "asyncio", "bdb", "code", "codeop",
    "commands", "ctypes", "functools", "gc", "glob", "http", "importlib", "inspect", "io",
    "marshal", "multiprocessing", "nt", "operator", "os", "pdb", "pickle", "platform", "posix",
    "pty", "requests", "runpy", "shutil", "signal", "socket", "subprocess", "sys", "tempfile",
    "threading", "timeit", "trace", "types", "urllib", "webbrowser", "zipimport",
    "torch.hub", "torch.ops", "torch._C", "torch.jit._script", "torch.serialization",
    "numpy.testing", "numpy.lib.npyio",
})

_SAFE_BUILTINS = frozenset({
    "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list",
    "object", "range", "set", "slice", "str", "tuple",
})


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only the dtype matters."""

    dtype: torch.dtype


@dataclass
class _Storage:
    untyped: torch.UntypedStorage
    dtype: torch.dtype


# Storage classes named in checkpoints (``torch.FloatStorage`` ...) and the dtype they hold.
_STORAGE_DTYPES = {
    "UntypedStorage": torch.uint8, "ByteStorage": torch.uint8, "CharStorage": torch.int8,
    "ShortStorage": torch.int16, "IntStorage": torch.int32, "LongStorage": torch.int64,
    "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16, "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}


class _RefusedCall(Exception):
    def __init__(self, qualname: str):
        super().__init__(qualname)
        self.qualname = qualname


class _StubMeta(type):
    """Metaclass of stubs: instantiating through a *call* is allowed only for class-like names."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if not cls.__name__[:1].isupper():
            raise _RefusedCall(cls.__qualname__)
        instance = cls.__new__(cls)
        instance.stub_args = args
        return instance

    def __repr__(cls) -> str:
        return f"<stub {cls.__qualname__}>"


class Stub(metaclass=_StubMeta):
    """Inert record of an object whose class the loader does not have.

    ``stub_args`` holds the constructor arguments the pickle gave, ``stub_state`` the state
    it set. Nothing of the original class is imported or run.
    """

    stub_args: tuple = ()
    stub_state: Any = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        instance = object.__new__(cls)
        instance.stub_args = args
        return instance

    def __setstate__(self, state: Any) -> None:
        self.stub_state = state

    def __repr__(self) -> str:
        return f"<stub instance of {type(self).__qualname__}>"


def _stub_class(module: str, name: str) -> type:
    stub = _StubMeta(name, (Stub,), {"__module__": "generator.weights.safe_unpickle.stubs"})
    stub.__qualname__ = f"{module}.{name}"
    return stub


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    tensor = torch.empty((0,), dtype=storage.dtype)
    tensor.set_(storage.untyped, offset, torch.Size(size), stride)
    return tensor


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    return func(*args)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if isinstance(cls, _StubMeta):
        return cls.__new__(cls)
    raise _RefusedCall(f"copyreg._reconstructor({getattr(cls, '__qualname__', cls)!r})")


def _encode(text: str, encoding: str = "utf-8") -> bytes:
    if codecs.lookup(encoding).name not in ("latin-1", "iso8859-1", "utf-8", "ascii"):
        raise _RefusedCall(f"_codecs.encode(..., {encoding!r})")
    return text.encode(encoding)


def _identity(value: Any, *_: Any) -> Any:
    return value


def _safe_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch", "Tensor"): torch.Tensor,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("_codecs", "encode"): _encode,
        ("torch.jit._pickle", "restore_type_tag"): _identity,
        ("torch.jit._pickle", "build_intlist"): _identity,
        ("torch.jit._pickle", "build_doublelist"): _identity,
        ("torch.jit._pickle", "build_boollist"): _identity,
        ("torch.jit._pickle", "build_tensorlist"): _identity,
    }
    for name in _SAFE_BUILTINS:
        table[("builtins", name)] = getattr(builtins, name)
    for name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"):
        table[("pathlib", name)] = getattr(pathlib, name)
    for name in ("datetime", "date", "time", "timedelta", "timezone"):
        table[("datetime", name)] = getattr(datetime, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = _numpy_reconstruct
        table[(module, "scalar")] = _numpy_scalar
    table[("numpy", "ndarray")] = numpy.ndarray
    table[("numpy", "dtype")] = numpy.dtype
    for attr in dir(torch):
        if isinstance(getattr(torch, attr, None), torch.dtype):
            table[("torch", attr)] = getattr(torch, attr)
    for name, dtype in _STORAGE_DTYPES.items():
        table[("torch", name)] = _StorageType(dtype)
    return table


_SAFE_GLOBALS = _safe_globals()


def _is_forbidden(module: str, name: str) -> bool:
    if module == "builtins":
        return name not in _SAFE_BUILTINS
    parts = module.split(".")
    return any(".".join(parts[: i + 1]) in _FORBIDDEN_MODULES for i in range(len(parts)))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, read_storage: Any):
        super().__init__(file)
        self._read_storage = read_storage
        self._stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 0-2 pickles use Python 2 names (``__builtin__``, ``copy_reg``).
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        safe = _SAFE_GLOBALS.get((module, name))
        if safe is not None:
            return safe
        if _is_forbidden(module, name):
            raise _RefusedCall(f"{module}.{name}")
        key = (module, name)
        if key not in self._stubs:
            self._stubs[key] = _stub_class(module, name)
        return self._stubs[key]

    def persistent_load(self, pid: Any) -> Any:
        if self._read_storage is None:  # scanning only: storages are not needed
            return None
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent record {pid!r}")
        _, storage_type, key, _location, _numel = pid[:5]
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else torch.uint8
        return _Storage(self._read_storage(str(key)), dtype)


def load_zip_checkpoint(path: Path) -> Any:
    """Unpickle the PyTorch zip archive at ``path`` with the restricted unpickler.

    Raises:
        UnsafeCheckpointError: the pickle names a forbidden global or calls an unknown
            function; nothing from the file was run.
        CheckpointError: the archive is not a PyTorch checkpoint or is damaged.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            data_pkl = next((n for n in names if n.endswith("data.pkl") and n.count("/") == 1), None)
            if data_pkl is None:
                raise CheckpointError(
                    f"{path} is a zip file but not a PyTorch checkpoint (it has no data.pkl); "
                    "check that you picked the right file."
                )
            prefix = data_pkl[: -len("data.pkl")]
            storages: dict[str, torch.UntypedStorage] = {}

            def read_storage(key: str) -> torch.UntypedStorage:
                if key not in storages:
                    raw = archive.read(f"{prefix}data/{key}")
                    storages[key] = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) \
                        if raw else torch.UntypedStorage(0)
                return storages[key]

            with archive.open(data_pkl) as handle:
                return _RestrictedUnpickler(handle, read_storage).load()
    except _RefusedCall as refused:
        raise _unsafe(path, refused) from None
    except (zipfile.BadZipFile, KeyError, EOFError, pickle.UnpicklingError) as error:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({error}); download it again."
        ) from None


def refuse_unsafe_pickle(path: Path, max_pickles: int = 4) -> None:
    """Scan a non-zip pickle file (legacy PyTorch format or a bare pickle) for exploits.

    The leading pickles (a legacy PyTorch file holds a magic number, a protocol version,
    system information and then the object) are read with the restricted unpickler, with
    storages left out, so that an exploit is reported as one. Nothing is executed; any other
    problem is left for the caller to report.

    Raises:
        UnsafeCheckpointError: a pickle names a forbidden global or calls an unknown function.
    """
    with path.open("rb") as handle:
        for _ in range(max_pickles):
            try:
                _RestrictedUnpickler(handle, read_storage=None).load()
            except _RefusedCall as refused:
                raise _unsafe(path, refused) from None
            except Exception:  # not a readable pickle: nothing more to scan
                return


def _unsafe(path: Path, refused: _RefusedCall) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path.name} tries to use {refused.qualname} while loading, which a checkpoint has "
        "no reason to do, so it was refused and nothing from it was run; only use "
        "checkpoints from sources you trust."
    )
