"""The child process that turns a pickled checkpoint into a safetensors copy.

Run as ``python -I -m generator.weights.safe_copy JOB`` by :mod:`generator.weights.sandbox`,
never imported by the serving process for its work. Before it looks at the file it lowers
its own limits (memory, CPU time, file size, open files, no core dump); then it reads the file
once into memory, hashes those bytes, parses them (:mod:`generator.weights.pickle_reader`),
checks every tensor before copying it (no meta tensor, no stride 0 or overlapping view, no
sparse tensor whose dense form outgrows the budget, no unknown dtype), and writes the tensors
to ``<copies>/<sha256>.safetensors``, read-only. It prints one JSON line: the digest, and the
refusal sentence if there is one.

What the copy holds (:data:`FORMAT`): the tensors of the checkpoint's top level under
``/<key>``, and those of each top-level mapping under ``<container>/<key>`` (``state_dict``,
``params_ema``, ``model``...); deeper data (optimizer state, callbacks, hyper-parameters) is
left out. A TorchScript archive's module tree becomes ``/<dotted attribute name>``, with the
class names of its modules in the metadata. Non-tensor top-level entries are named in the
metadata with their type, for messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from generator.errors import CheckpointError
from generator.weights.pickle_scan import shown

try:
    import resource
except ImportError:  # Windows: only the parent's wall-clock limit applies
    resource = None  # type: ignore[assignment]

FORMAT = "vqgan-studio-safe-copy/1"
DIGEST_PREFIX = "sha256: "  # the line on stderr that names the bytes being parsed
MAX_ENTRIES = 200  # non-tensor entries and module class names kept in the metadata
MAX_ARCHIVE_DEPTH = 64  # nested TorchScript modules; OpenAI's archives nest about eight deep


def apply_limits(memory_bytes: int, cpu_seconds: int, file_bytes: int) -> None:
    """Lower this process's own hard limits: private memory (and address space, loosely), CPU
    time, the largest file it may write, open files, and no core file (where the system has
    POSIX resource limits)."""
    if resource is None:
        return
    for limit, value, grace in ((resource.RLIMIT_DATA, memory_bytes, 0),
                                (resource.RLIMIT_AS, memory_bytes + 8 * 2**30, 0),
                                (resource.RLIMIT_CPU, cpu_seconds, 5),  # SIGXCPU at the limit, SIGKILL 5 s later
                                (resource.RLIMIT_FSIZE, file_bytes, 0), (resource.RLIMIT_NOFILE, 64, 0),
                                (resource.RLIMIT_CORE, 0, 0)):
        _, hard = resource.getrlimit(limit)
        if hard != resource.RLIM_INFINITY:
            value, grace = min(value, hard), min(grace, max(0, hard - value))
        resource.setrlimit(limit, (value, value + grace))


def main(argv: list[str] | None = None) -> int:
    """Child entry point: ``JOB`` is JSON with ``source``, ``copies``, ``memory``, ``cpu`` and ``write``."""
    job = json.loads((argv if argv is not None else sys.argv[1:])[0])
    apply_limits(int(job["memory"]), int(job["cpu"]), int(job["write"]))
    source, copies = Path(job["source"]), Path(job["copies"])
    try:
        data = source.read_bytes()
    except OSError as error:
        return _answer({"ok": False, "error": "CheckpointError",
                        "message": f"cannot read {source.name} ({error.strerror or type(error).__name__}); check "
                                   "the file and its permissions."})
    digest = hashlib.sha256(data).hexdigest()
    target = copies / f"{digest}.safetensors"
    if target.is_file():
        return _answer({"ok": True, "sha256": digest})
    sys.stderr.write(f"{DIGEST_PREFIX}{digest}\n")
    sys.stderr.flush()
    try:
        tensors, metadata = convert(data, source.name, digest)
        del data
        _write(target, tensors, metadata)
    except CheckpointError as error:
        return _answer({"ok": False, "sha256": digest, "error": type(error).__name__, "message": str(error)})
    except MemoryError:
        return _answer({"ok": False, "sha256": digest, "error": "MemoryError"})
    except RuntimeError as error:  # torch's allocator says it in its own words
        if "memory" not in str(error).lower():
            raise
        return _answer({"ok": False, "sha256": digest, "error": "MemoryError"})
    return _answer({"ok": True, "sha256": digest})


def _answer(result: dict[str, Any]) -> int:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _write(target: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    from generator.weights.tensor_file import write_tensor_file

    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        write_tensor_file(partial, tensors, metadata)
        os.chmod(partial, 0o444)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def convert(data: bytes, name: str, digest: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors to write and the metadata of the copy of the checkpoint ``data``.

    Raises:
        CheckpointError: unreadable or unsafe (see :func:`read_pickled`), or a tensor that
            cannot be copied safely.
    """
    import torch

    from generator.weights.pickle_reader import ALLOWANCE, SIZE_FACTOR, read_pickled
    from generator.weights.safe_unpickle import Stub

    torch.set_num_threads(1)
    loaded = read_pickled(data, name)
    metadata = {"format": FORMAT, "source_sha256": digest, "source_name": name[:200]}
    found: dict[str, Any] = {}
    if isinstance(loaded, Stub) and type(loaded).__qualname__.startswith("__torch__."):
        metadata["kind"] = "torchscript"
        classes: set[str] = set()
        for key, value in _archive_items(loaded, name):
            if isinstance(value, torch.Tensor):
                found[f"/{key}"] = value
            elif isinstance(value, Stub) and len(classes) < MAX_ENTRIES:
                classes.add(type(value).__qualname__.rsplit(".", 1)[-1][:80])
        metadata["classes"] = json.dumps(sorted(classes))
    elif isinstance(loaded, Mapping):
        metadata["kind"] = "mapping"
        entries: dict[str, str] = {}
        for key, value in loaded.items():
            if not isinstance(key, str):
                continue
            if isinstance(value, torch.Tensor):
                found[f"/{key}"] = value
            elif isinstance(value, Mapping) and "/" not in key and any(isinstance(v, torch.Tensor)
                                                                         for v in value.values()):
                found.update({f"{key}/{inner}": tensor for inner, tensor in value.items()
                              if isinstance(inner, str) and isinstance(tensor, torch.Tensor)})
                others = [inner for inner, tensor in value.items() if not isinstance(tensor, torch.Tensor)]
                if others and len(entries) < MAX_ENTRIES:
                    entries[f"{key}/{_entry_name(others[0])}"] = type(value[others[0]]).__name__
            elif len(entries) < MAX_ENTRIES:
                entries[key[:200]] = type(value).__name__
        metadata["entries"] = json.dumps(entries)
    else:
        metadata["kind"] = type(loaded).__name__[:80]
    budget = SIZE_FACTOR * len(data) + ALLOWANCE
    tensors, total = {}, 0
    for key, tensor in found.items():
        copied = _checked(tensor, key, name, budget)
        total += copied.numel() * copied.element_size()
        if total > budget:
            raise _refused(name, "holds more tensor data than its size can justify (views repeat their storage)")
        tensors[key] = copied
    return tensors, metadata


def _entry_name(key: Any) -> str:
    return key[:200] if isinstance(key, str) else f"<{type(key).__name__}>"


def _refused(name: str, why: str) -> CheckpointError:
    return CheckpointError(f"{name} {why}, which no checkpoint does, so it was not loaded; use the model's file "
                           "from its official source.")


def _checked(tensor: Any, key: str, name: str, budget: int) -> Any:
    """A dense, contiguous copy of ``tensor`` if it can be made within ``budget`` bytes and
    is what a state dict holds; refused (before anything is copied) otherwise."""
    import torch

    from generator.weights.tensor_file import DTYPE_NAMES

    label = shown(key.lstrip("/"))
    if tensor.is_meta:
        raise _refused(name, f"holds a tensor without data ({label} is a meta tensor)")
    if tensor.is_quantized or tensor.is_nested or tensor.dtype not in DTYPE_NAMES:
        raise _refused(name, f"holds a kind of tensor no model here uses ({label}: {shown(str(tensor.dtype))})")
    if tensor.layout != torch.strided:
        if tensor.numel() * tensor.element_size() > budget:
            raise _refused(name, f"holds a sparse tensor ({label}) far larger than the file")
        return tensor.detach().to_dense()
    sides = [(stride, size) for size, stride in zip(tensor.shape, tensor.stride(), strict=True) if size > 1]
    if any(stride == 0 for stride, _ in sides):
        raise _refused(name, f"holds a tensor that repeats one value over its shape ({label} has stride 0)")
    reach = 1  # one past the furthest element the smaller strides reach
    for stride, size in sorted(sides):
        if stride < reach:
            raise _refused(name, f"holds a tensor whose elements overlap ({label})")
        reach += stride * (size - 1)
    return tensor.detach().contiguous()


def _archive_items(root: Any, name: str) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every attribute of a TorchScript module tree, depth first; each
    module visited once, deeper than :data:`MAX_ARCHIVE_DEPTH` refused."""
    from generator.weights.safe_unpickle import Stub

    seen = {id(root)}
    work: list[tuple[Any, str, int]] = [(root, "", 0)]
    while work:
        stub, prefix, depth = work.pop()
        state = stub.stub_state if isinstance(stub.stub_state, Mapping) else {}
        children = []
        for attribute, value in state.items():
            if not isinstance(attribute, str):
                continue
            yield f"{prefix}{attribute}", value
            if isinstance(value, Stub) and id(value) not in seen:
                if depth + 1 > MAX_ARCHIVE_DEPTH:
                    raise _refused(name, f"nests modules more than {MAX_ARCHIVE_DEPTH} deep")
                seen.add(id(value))
                children.append((value, f"{prefix}{attribute}.", depth + 1))
        work.extend(reversed(children))


if __name__ == "__main__":
    sys.exit(main())
