"""Open checkpoints of every supported format without running, parsing or mapping anything
untrusted in this process.

Formats: Lightning ``.ckpt`` and PyTorch ``.pth``/``.pt``/``.bin`` files (zip archives or the
pre-1.6 format), TorchScript archives (OpenAI's CLIP ``.pt``) and ``.safetensors``.

A pickled file is parsed once, by a child process with hard limits
(:mod:`generator.weights.sandbox`), which writes a safetensors copy into the store of safe
copies (:mod:`generator.weights.copies`), keyed by the sha256 of the file's bytes; this and
every later load, in every process, read only that copy. A safetensors file is read as it is.
Either way this process checks the header first (:mod:`generator.weights.tensor_file`): the
tensors' shapes and dtypes come back as ``meta`` tensors, so each model compares them with
the shapes its config implies before anything is allocated, and only then are the bytes of
the tensors it needs copied into fresh memory. Every refusal is one :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from generator.errors import CheckpointError, UnsafeCheckpointError
from generator.weights import copies as safe_copies
from generator.weights.digests import sha256_of
from generator.weights.locks import download_lock
from generator.weights.safe_copy import FORMAT
from generator.weights.sandbox import ReaderLimits, make_safe_copy
from generator.weights.tensor_file import TensorFile

logger = logging.getLogger(__name__)

ROOT = ""
"""The container name of a checkpoint's top-level tensors."""


@dataclass
class Checkpoint:
    """What a checkpoint holds, checked and not yet read.

    Attributes:
        source: the file's name, for messages.
        kind: ``mapping`` (a dict, as state dicts and Lightning files are), ``torchscript`` (a
            module tree, its tensors by dotted attribute name) or the type of whatever else the
            file held.
        containers: ``meta`` tensors by container (``state_dict``, ``params_ema``...; :data:`ROOT`
            for the top level) and key.
        entries: the non-tensor entries of a mapping, with their type names (for messages).
        classes: the class names of a TorchScript archive's modules.
    """

    source: str
    file: TensorFile = field(repr=False)
    kind: str = "mapping"
    containers: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    entries: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = ()

    def read(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Real tensors for ``meta`` tensors of this checkpoint (keys kept as given), copied into
        fresh memory; see :meth:`TensorFile.read`."""
        return self.file.read(tensors)

    def load(self) -> dict[str, Any]:
        """Everything, read: the top-level tensors, and each container as a dict."""
        loaded: dict[str, Any] = dict(self.read(self.containers.get(ROOT, {})))
        for name, tensors in self.containers.items():
            if name != ROOT:
                loaded[name] = self.read(tensors)
        return loaded

    def close(self) -> None:
        """Let go of the file."""
        self.file.close()


def open_checkpoint(path: str | os.PathLike[str], *, weights_dir: str | os.PathLike[str] | None = None,
                    limits: ReaderLimits | None = None) -> Checkpoint:
    """Check a checkpoint file and return what it holds, read on request.

    Args:
        path: the file.
        weights_dir: whose store of safe copies to use (default: the weights folder's).
        limits: what the child reading a pickle may use (default: :meth:`ReaderLimits.from_env`).

    Raises:
        CheckpointError: the file is missing, empty, a web page, truncated, corrupt, or crafted
            to exhaust memory or time (one sentence, nothing loaded).
        UnsafeCheckpointError: its pickle tries to run code (nothing was run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path.")
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError as error:
        raise CheckpointError(f"cannot read {path} ({error.strerror or type(error).__name__}); check the file "
                              "and its permissions.") from None
    if not head:
        raise CheckpointError(f"{path} is empty; download it again.")
    if head.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")):
        raise CheckpointError(
            f"{path} is a web page, not a checkpoint (the download link returned HTML); "
            "download the file itself again."
        )
    if _is_safetensors(head, path):
        return _from_tensor_file(TensorFile(path))
    return _from_tensor_file(_safe_copy(path, weights_dir, limits))


def read_checkpoint(path: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """Every tensor of a checkpoint, read (see :func:`open_checkpoint` and :meth:`Checkpoint.load`)."""
    checkpoint = open_checkpoint(path, **options)
    try:
        return checkpoint.load()
    finally:
        checkpoint.close()


def _is_safetensors(head: bytes, path: Path) -> bool:
    """A safetensors file starts with its header's length and then ``{``; a file named
    ``.safetensors`` is one whatever it holds (its header check then says what is wrong)."""
    if path.suffix.lower() == ".safetensors":
        return True
    return len(head) > 8 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < path.stat().st_size


def _from_tensor_file(file: TensorFile) -> Checkpoint:
    """Sort a safetensors file's tensors into containers: a safe copy's layout is in its
    metadata (``/key``, ``container/key``); any other file's tensors are all top level."""
    metadata = file.metadata
    tensors = file.meta()
    if metadata.get("format") != FORMAT:
        return Checkpoint(file.source, file, containers={ROOT: tensors})
    containers: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        container, _, key = name.partition("/")
        containers.setdefault(container, {})[key] = tensor
    try:
        entries = json.loads(metadata.get("entries", "{}"))
        classes = tuple(json.loads(metadata.get("classes", "[]")))
    except ValueError:
        entries, classes = {}, ()
    return Checkpoint(file.source, file, kind=metadata.get("kind", "mapping"), containers=containers,
                      entries=entries if isinstance(entries, dict) else {}, classes=classes)


def _safe_copy(path: Path, weights_dir: str | os.PathLike[str] | None, limits: ReaderLimits | None) -> TensorFile:
    """The safe copy of the pickled checkpoint ``path``, opened, made by a limited child if
    there is none yet for its bytes (found by the file's size, times and inode, else by hashing it).

    Raises:
        CheckpointError, UnsafeCheckpointError: the file was refused (now or before).
    """
    copies = safe_copies.copies_dir(weights_dir)
    limits = limits or ReaderLimits.from_env()
    digest = safe_copies.known_digest(copies, path)
    if digest is None:
        stat = safe_copies.stat_of(path)
        digest = sha256_of(path)
        safe_copies.remember(copies, path, digest, stat)
    opened = _opened_copy(copies, digest, path, limits)
    if opened is not None:
        return opened
    with download_lock(copies / f"{digest}.convert"):
        opened = _opened_copy(copies, digest, path, limits)  # another process may have made it meanwhile
        if opened is not None:
            return opened
        stat = safe_copies.stat_of(path)
        logger.info("reading %s in a limited child process to make its safe copy (once per file)", path.name)
        outcome = make_safe_copy(path, copies, limits)
    if outcome.digest is not None:
        safe_copies.remember(copies, path, outcome.digest, stat)  # what the child read, should the file have changed
    if outcome.error is None and outcome.digest is not None:
        return TensorFile(safe_copies.copy_path(copies, outcome.digest), source=path.name)
    if outcome.lasting and outcome.digest is not None:
        safe_copies.record_refusal(copies, outcome.digest, safe_copies.Refusal(
            type(outcome.error).__name__, path.name, str(outcome.error), outcome.limits))
    assert outcome.error is not None
    raise outcome.error


def _opened_copy(copies: Path, digest: str, path: Path, limits: ReaderLimits) -> TensorFile | None:
    """The copy of ``digest``, opened, or raise its recorded refusal; None: convert again (the
    copy was removed, a newer reader made the record stale, or the limits that stopped the
    last child have been raised)."""
    refused = safe_copies.refusal(copies, digest)
    size = path.stat().st_size
    if refused is not None and refused.holds_under(limits.memory(size), limits.cpu(size)):
        error_class = UnsafeCheckpointError if refused.error == "UnsafeCheckpointError" else CheckpointError
        message, old_name = refused.message, refused.name
        raise error_class(message.replace(old_name, path.name) if old_name and old_name != path.name else message)
    target = safe_copies.copy_path(copies, digest)
    if not target.is_file():
        return None
    try:
        copy = TensorFile(target, source=path.name)
    except CheckpointError:
        logger.warning("the safe copy %s is damaged; making it again", target.name)
        target.unlink(missing_ok=True)
        return None
    if copy.metadata.get("format") != FORMAT:
        copy.close()
        return None
    return copy
