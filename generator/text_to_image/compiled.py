"""``--compile``: the VQGAN decoder and the CLIP image encoders through ``torch.compile``.

Compiling is optional and can fail in ways that have nothing to do with the user's settings
(no C++ compiler, a Triton too old for the GPU, an operation the compiler does not support).
The guidance loop therefore treats a compiler error as a reason to continue without
compiling, never as the end of the run: :func:`is_compiler_error` recognises one, wherever
it surfaces (the forward call, or the backward pass that compiles lazily).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_COMPILER_MODULES = ("torch._dynamo", "torch._inductor", "triton")


def is_compiler_error(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it was raised from) comes from torch.compile's
    machinery rather than from the computation itself."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__module__.startswith(_COMPILER_MODULES):
            return True
        current = current.__cause__ or current.__context__
    return False


def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` compiled lazily (on its first call) for the shapes it meets.

    ``dynamic=False``: a loop calls it with one shape per run, and static shapes give the
    fastest kernels (a new batch size compiles once more).
    """
    return torch.compile(function, dynamic=False)
