"""State dicts: unwrapping them from checkpoints, and fitting them to models strictly.

Fitting is checked before anything is allocated: the model is first built on the ``meta``
device, its keys and shapes compared with the state dict, and only a model that fits is made
real, taking the checkpoint's tensors as its parameters. A config that claims a model far
larger than the file (or another architecture) is one readable :class:`CheckpointError`
naming the differing shapes, never an allocation of gigabytes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from generator.errors import CheckpointError
from generator.weights.checkpoints import ROOT, Checkpoint
from generator.weights.pickle_scan import shown

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
Model = TypeVar("Model", bound=nn.Module)


def state_dict_from(
    checkpoint: Checkpoint | Mapping[str, Any], *, source: str,
    containers: Iterable[str] = ("state_dict", "params_ema", "params"),
) -> StateDict:
    """The tensors of a checkpoint: the first container key present, else the top level.

    Args:
        checkpoint: what :func:`open_checkpoint` returned (its tensors come back as ``meta``
            tensors, to be read with :meth:`Checkpoint.read` once they fit), or a mapping.
        source: the file name, for messages.
        containers: keys that wrap a state dict (``state_dict`` in Lightning files,
            ``params_ema``/``params`` in Real-ESRGAN files), tried in order.

    Raises:
        CheckpointError: no state dict found, or an entry is not a tensor.
    """
    containers = tuple(containers)
    wanted = " or ".join(repr(c) for c in containers)
    if isinstance(checkpoint, Checkpoint):
        if checkpoint.kind not in ("mapping", "torchscript"):
            raise CheckpointError(f"{source} holds a {shown(checkpoint.kind)}, not a state dict; "
                                  "give the checkpoint file of the model itself.")
        found = next((c for c in containers if c in checkpoint.containers), None)
        if found is not None:
            return dict(checkpoint.containers[found])
        top = [(key, kind) for key, kind in checkpoint.entries.items() if "/" not in key]
        if top:
            key, kind = top[0]
            raise CheckpointError(f"{source} is not a state dict (its entry {_key(key)} is a {shown(kind)}, and it "
                                  f"has no {wanted} entry); give the model's checkpoint file.")
        return dict(checkpoint.containers.get(ROOT, {}))
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{source} holds a {shown(type(checkpoint).__name__)}, not a state dict; "
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
            raise CheckpointError(
                f"{source} is not a state dict (its entry {_key(key)} is a {shown(type(value).__name__)}, "
                f"and it has no {wanted} entry); give the model's checkpoint file."
            )
        if not isinstance(key, str):
            raise CheckpointError(f"{source} is not a state dict (it has a {shown(type(key).__name__)} key); "
                                  "give the model's checkpoint file.")
        state[key] = value
    return state


def _key(key: Any) -> str:
    """A state-dict key for a message: quoted, escaped and short (it comes from the file)."""
    return f"'{shown(key)}'" if isinstance(key, str) else f"of type {shown(type(key).__name__)}"


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
    dtypes: list[tuple[str, torch.dtype, torch.dtype]] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes or self.dtypes)

    def describe(self, limit: int = 3) -> str:
        """A clause such as ``quantize.embedding.weight is [1024, 256] in the checkpoint but
        [16384, 256] in the model``, listing at most ``limit`` items of each kind."""
        parts = []
        for key, found, wanted in self.shapes[:limit]:
            parts.append(f"{shown(key)} is {list(found)} in the checkpoint but {list(wanted)} in the model")
        if len(self.shapes) > limit:
            parts.append(f"{len(self.shapes) - limit} more tensors differ in shape")
        for key, found, wanted in self.dtypes[:limit]:
            parts.append(f"{shown(key)} holds {_kind(found)} in the checkpoint but {_kind(wanted)} in the model")
        for label, keys in (("missing from the checkpoint", self.missing),
                            ("in the checkpoint but not in the model", self.unexpected)):
            if keys:
                names = ", ".join(shown(key) for key in keys[:limit]) + (", ..." if len(keys) > limit else "")
                parts.append(f"{len(keys)} tensors are {label} ({names})")
        return "; ".join(parts)


def _kind(dtype: torch.dtype) -> str:
    """What a dtype holds, as far as loading a model cares: real numbers, complex ones, integers or truth values."""
    if dtype.is_complex:
        return "complex numbers"
    if dtype.is_floating_point:
        return "real numbers"
    return "truth values" if dtype == torch.bool else "integers"


def compare_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> FitReport:
    """Compare ``state`` with ``model.state_dict()`` key by key and shape by shape."""
    expected = model.state_dict()
    report = FitReport()
    for key, tensor in expected.items():
        if key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) != tuple(tensor.shape):
            report.shapes.append((key, tuple(state[key].shape), tuple(tensor.shape)))
        elif _kind(state[key].dtype) != _kind(tensor.dtype):
            report.dtypes.append((key, state[key].dtype, tensor.dtype))
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
    _raise_unless_fits(model, state, source=source, what=what, likely_cause=likely_cause, remedy=remedy)
    model.load_state_dict(state, strict=True)


def _raise_unless_fits(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, what: str,
                       likely_cause: str | None, remedy: str) -> None:
    report = compare_state_dict(model, state)
    if not report.fits:
        cause = f"{likely_cause}, so " if likely_cause else ""
        raise CheckpointError(f"{source} does not fit {what}: {cause}{report.describe()}; {remedy}.")


def build_strict(
    factory: Callable[[], Model],
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    what: str,
    likely_cause: str | None = None,
    remedy: str = "pass the config that came with this checkpoint",
    read: Callable[[StateDict], StateDict] | None = None,
) -> Model:
    """``factory()`` with ``state`` as its parameters, fitted strictly, checked before anything
    is allocated: the model is built on the ``meta`` device and compared with ``state`` first,
    so a config claiming more (or other) tensors than the checkpoint holds costs nothing. The
    result takes the checkpoint's tensors (cast to float32 where they are floating point).
    ``state`` may hold ``meta`` tensors (:func:`state_dict_from` of a :class:`Checkpoint`):
    ``read`` (:meth:`Checkpoint.read`) then reads them once they fit.

    Raises:
        CheckpointError: ``state`` does not fit (as :func:`load_strict` says it).
    """
    with torch.device("meta"):
        model = factory()
    _raise_unless_fits(model, state, source=source, what=what, likely_cause=likely_cause, remedy=remedy)
    if read is not None:
        state = read(state)
    if any(tensor.is_meta for tensor in state.values()):
        raise CheckpointError(f"{source} holds tensors without data (meta tensors), which a model cannot use; "
                              "give the file the model was saved to.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch notes that assign=True keeps the checkpoint's tensors
        model.load_state_dict(state, strict=True, assign=True)
    if any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers())):
        raise AssertionError(f"{type(model).__name__} has tensors outside its state dict")  # a model bug
    return model.float()
