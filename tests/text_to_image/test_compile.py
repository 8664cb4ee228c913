"""``--compile``: traced by torch.compile without breaking the loop, and when the compiler
fails (in the forward call or in the backward pass) the run goes on without it, says so once,
and makes the image an uncompiled run makes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch._dynamo.exc import TorchRuntimeError

from generator.events import Done, Notice
from generator.text_to_image import loop as loop_module
from generator.text_to_image.compiled import is_compiler_error
from generator.text_to_image.pipeline import TextToImage
from tests.factories import tiny_run_config


def _run(pipeline: TextToImage, config) -> tuple[np.ndarray, list[str]]:
    notices, image = [], None
    with pipeline.run(config) as run:
        for event in run:
            if isinstance(event, Notice):
                notices.append(event.message)
            elif isinstance(event, Done):
                image = np.asarray(event.images[0], dtype=np.float64)
    assert image is not None
    return image, notices


class _FailsInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        raise TorchRuntimeError("inductor could not lower the backward graph")


def _failing_compiler(where: str):
    def compiled(function):
        def call(*args, **kwargs):
            if where == "forward":
                raise TorchRuntimeError("no C++ compiler found")
            return _FailsInBackward.apply(function(*args, **kwargs))
        return call
    return compiled


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_a_failing_compiler_leaves_a_notice_and_the_image_of_an_uncompiled_run(tiny_pipeline, tiny_files,
                                                                               monkeypatch, where: str) -> None:
    plain, plain_notices = _run(tiny_pipeline, tiny_run_config(tiny_files, steps=5))
    monkeypatch.setattr(loop_module, "compiled", _failing_compiler(where))
    image, notices = _run(tiny_pipeline, tiny_run_config(tiny_files, steps=5, compile=True))
    failures = [text for text in notices if text.startswith("--compile failed")]
    assert len(failures) == 1 and failures[0].endswith("; continuing without compiling.")
    assert "could not lower" in failures[0] or "no C++ compiler" in failures[0]
    assert np.array_equal(image, plain)  # the failed step changed nothing; every step ran once


def test_errors_of_the_computation_itself_are_not_taken_for_compiler_errors(tiny_pipeline, tiny_files,
                                                                           monkeypatch) -> None:
    def compiled(function):
        def call(*args, **kwargs):
            raise ValueError("a real bug")
        return call

    monkeypatch.setattr(loop_module, "compiled", compiled)
    with pytest.raises(ValueError, match="a real bug"):
        _run(tiny_pipeline, tiny_run_config(tiny_files, steps=2, compile=True))


def test_compiler_errors_are_recognised_through_their_causes() -> None:
    assert is_compiler_error(TorchRuntimeError("x"))
    try:
        try:
            raise TorchRuntimeError("inner")
        except TorchRuntimeError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_compiler_error(outer)
    assert not is_compiler_error(RuntimeError("shape mismatch"))
    assert not is_compiler_error(torch.OutOfMemoryError("CUDA out of memory"))


def test_the_loop_traces_under_torch_compile_and_matches_the_uncompiled_image(tiny_pipeline, tiny_files,
                                                                             monkeypatch) -> None:
    # aot_eager traces forward and backward as torch.compile does, without generating code,
    # so this checks the loop's compiled parts are traceable in seconds; bench/gpu_suite.sh
    # measures the real compiler.
    monkeypatch.setattr(loop_module, "compiled", lambda function: torch.compile(function, backend="aot_eager"))
    plain, _ = _run(tiny_pipeline, tiny_run_config(tiny_files, steps=4))
    image, notices = _run(tiny_pipeline, tiny_run_config(tiny_files, steps=4, compile=True))
    assert not [text for text in notices if "compile" in text]
    assert np.abs(image - plain).mean() <= 1.0
