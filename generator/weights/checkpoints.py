"""Read checkpoints of every supported format into plain state dicts, safely.

Formats: Lightning ``.ckpt`` and PyTorch ``.pth``/``.pt``/``.bin`` files (zip archives,
read with ``torch.load(weights_only=True)`` and, when that refuses a harmless class
reference, with :mod:`generator.weights.safe_unpickle`), TorchScript archives, and
``.safetensors``. Nothing in this module ever executes code from a file.

Fitting a state dict to a model is strict: every key must be present with the right shape.
A mismatch becomes one readable :class:`CheckpointError` naming the differing shapes.
"""

from __future__ import annotations

import logging
import pickle
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from torch import nn

from generator.errors import CheckpointError, summary
from generator.weights.safe_unpickle import load_zip_checkpoint, refuse_unsafe_pickle

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


def read_checkpoint(path: str | Path) -> Any:
    """Load the object stored in a checkpoint file, on the CPU, without running its code.

    Raises:
        CheckpointError: the file is missing, empty, a web page, truncated or corrupt.
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
    is_zip = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():  # torch warns before refusing a TorchScript archive
            warnings.filterwarnings("ignore", message=".*TorchScript archive.*")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        refused_a_global = "Unsupported global" in str(error) or "Weights only load failed" in str(error)
        if not refused_a_global:
            raise _corrupt(path, error) from None
        if not is_zip:
            refuse_unsafe_pickle(path)
            raise CheckpointError(
                f"{path} uses the pre-1.6 PyTorch format and stores objects other than tensors, "
                "which cannot be loaded safely; re-save its state dict with a current PyTorch."
            ) from None
        logger.debug("torch.load(weights_only=True) refused %s (%s); using the restricted reader",
                     path, summary(error))
    except RuntimeError as error:
        if not (is_zip and "TorchScript" in str(error)):
            raise _corrupt(path, error) from None
    except Exception as error:  # any other failure means a damaged file
        raise _corrupt(path, error) from None
    return load_zip_checkpoint(path)


def _corrupt(path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(f"{path} is truncated or corrupt ({summary(error)}); download it again.")




def state_dict_from(
    checkpoint: Any, *, source: str, containers: Iterable[str] = ("state_dict", "params_ema", "params")
) -> StateDict:
    """The tensors of a checkpoint: the first container key present, else the mapping itself.

    Args:
        checkpoint: what :func:`read_checkpoint` returned.
        source: the file name, for messages.
        containers: keys that wrap a state dict (``state_dict`` in Lightning files,
            ``params_ema``/``params`` in Real-ESRGAN files), tried in order.

    Raises:
        CheckpointError: no state dict found, or an entry is not a tensor.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(checkpoint).__name__}, not a state dict; "
            "give the checkpoint file of the model itself."
        )
    for key in containers:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            checkpoint = inner
            break
    state: StateDict = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            wanted = " or ".join(repr(c) for c in containers)
            raise CheckpointError(
                f"{source} is not a state dict (its entry {key!r} is a {type(value).__name__}, "
                f"and it has no {wanted} entry); give the model's checkpoint file."
            )
        state[str(key)] = value
    return state


def with_prefix(state: StateDict, prefix: str) -> StateDict:
    """The entries under ``prefix`` with the prefix removed."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def without(state: StateDict, *, prefixes: Iterable[str] = (), names: Iterable[str] = ()) -> StateDict:
    """``state`` minus entries whose key starts with any of ``prefixes`` or equals any of ``names``."""
    prefixes, names = tuple(prefixes), set(names)
    kept = {k: v for k, v in state.items() if not (k.startswith(prefixes) or k in names)}
    if len(kept) != len(state):
        logger.debug("dropped %d training-only entries", len(state) - len(kept))
    return kept


@dataclass
class FitReport:
    """How a state dict differs from what a model expects."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes)

    def describe(self, limit: int = 3) -> str:
        """A clause such as ``quantize.embedding.weight is [1024, 256] in the checkpoint but
        [16384, 256] in the model``, listing at most ``limit`` items of each kind."""
        parts = []
        for key, found, wanted in self.shapes[:limit]:
            parts.append(f"{key} is {list(found)} in the checkpoint but {list(wanted)} in the model")
        if len(self.shapes) > limit:
            parts.append(f"{len(self.shapes) - limit} more tensors differ in shape")
        for label, keys in (("missing from the checkpoint", self.missing),
                            ("in the checkpoint but not in the model", self.unexpected)):
            if keys:
                shown = ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")
                parts.append(f"{len(keys)} tensors are {label} ({shown})")
        return "; ".join(parts)


def compare_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> FitReport:
    """Compare ``state`` with ``model.state_dict()`` key by key and shape by shape."""
    expected = model.state_dict()
    report = FitReport()
    for key, tensor in expected.items():
        if key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) != tuple(tensor.shape):
            report.shapes.append((key, tuple(state[key].shape), tuple(tensor.shape)))
    report.unexpected = [key for key in state if key not in expected]
    return report


def load_strict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    what: str,
    likely_cause: str | None = None,
    remedy: str = "pass the config that came with this checkpoint",
) -> None:
    """``model.load_state_dict(state, strict=True)``, with one readable error on a mismatch.

    Args:
        source: the checkpoint's file name.
        what: what the model is, for the message ("the VQGAN").
        likely_cause: a clause explaining the mismatch, when the caller can tell.
        remedy: what the user should do.
    """
    report = compare_state_dict(model, state)
    if not report.fits:
        cause = f"{likely_cause}, so " if likely_cause else ""
        raise CheckpointError(
            f"{source} does not fit {what}: {cause}{report.describe()}; {remedy}."
        )
    model.load_state_dict(state, strict=True)
