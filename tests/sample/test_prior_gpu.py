"""The prior on CUDA: cached == recomputed, the CUDA-graph step (captured once, replayed per
token) gives the eager tokens, non-finite logits leave the CUDA context usable, and an
out-of-memory error names the GPU. Skipped without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generator.config import SampleConfig
from generator.errors import OutOfMemoryError
from generator.events import Done
from generator.sample import pipeline
from generator.sample.conditioning import start_tokens
from generator.sample.fixed_step import FixedStep
from generator.sample.loader import Prior, load_prior
from generator.sample.pipeline import Sampler
from generator.sample.sampling import NonFiniteLogitsError, SamplingSettings, sample_in_window, window_step
from models.gpt import with_linear_dtype
from tests.prior_factories import save_tiny_prior

pytestmark = pytest.mark.gpu


@pytest.fixture
def prior(tmp_path: Path) -> Prior:
    return load_prior(save_tiny_prior(tmp_path, "sos").checkpoint, device="cuda")


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts CUDA graph replays (one entry per replay)."""
    counted: list[int] = []
    original = torch.cuda.CUDAGraph.replay

    def replay(self: torch.cuda.CUDAGraph) -> None:
        counted.append(1)
        original(self)

    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", replay)
    return counted


def _sample(prior: Prior, gpt, batch: int, step, *, use_cache: bool = True, seed: int = 3) -> torch.Tensor:
    tokens = torch.zeros(batch, 256, dtype=torch.long, device="cuda")
    list(sample_in_window(gpt, start_tokens(prior, batch, None), tokens, 16, start=0,
                          settings=SamplingSettings(top_k=8), generator=torch.Generator("cuda").manual_seed(seed),
                          use_cache=use_cache, step=step))
    return tokens.cpu()


def test_cached_equals_recomputed_on_cuda(prior: Prior) -> None:
    assert torch.equal(_sample(prior, prior.gpt, 2, None), _sample(prior, prior.gpt, 2, None, use_cache=False))


def test_the_graph_step_gives_the_eager_tokens(prior: Prior, replays: list[int]) -> None:
    eager = _sample(prior, prior.gpt, 1, None)
    fixed = _sample(prior, prior.gpt, 1, FixedStep(prior.gpt, 1, 256))
    assert not replays
    graph = FixedStep(prior.gpt, 1, 256, graph=True)
    assert graph.graph is not None  # captured, not fallen back to eager
    assert torch.equal(_sample(prior, prior.gpt, 1, graph), eager) and torch.equal(fixed, eager)
    assert len(replays) == 255  # one replay per token after the first
    assert torch.equal(_sample(prior, prior.gpt, 1, graph, seed=9), _sample(prior, prior.gpt, 1, None, seed=9))
    assert len(eager.unique()) > 4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_graph_step_in_half_precision_replays_the_eager_fixed_step(prior: Prior, dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no bf16 units (emulating it would not test the fast path)")
    gpt = with_linear_dtype(prior.gpt, dtype)
    graph = FixedStep(gpt, 1, 256, graph=True)
    assert graph.graph is not None and graph.cache.keys.dtype == dtype
    assert torch.equal(_sample(prior, gpt, 1, graph), _sample(prior, gpt, 1, FixedStep(gpt, 1, 256)))


def test_window_step_is_a_graph_at_batch_1_only(prior: Prior) -> None:
    step = window_step(prior.gpt, 1, 256)
    assert isinstance(step, FixedStep) and step.graph is not None
    assert window_step(prior.gpt, 2, 256) is None
    torch.use_deterministic_algorithms(True)
    try:
        assert window_step(prior.gpt, 1, 256) is None
    finally:
        torch.use_deterministic_algorithms(False)


def test_a_sampling_run_captures_once_and_replays_per_token(prior: Prior, replays: list[int],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = Sampler(prior)
    config = SampleConfig.from_dict({"n": 3, "batch_size": 1, "seed": 5, "precision": "fp32"})
    captured: list[FixedStep | None] = []
    original = pipeline.window_step

    def counting(*args) -> FixedStep | None:
        captured.append(original(*args))
        return captured[-1]

    monkeypatch.setattr(pipeline, "window_step", counting)
    with_graph = list(sampler.run(config))[-1]
    assert len(captured) == 1 and captured[0] is not None and len(replays) == 3 * 255
    monkeypatch.setattr(pipeline, "window_step", lambda *args: None)
    eager = list(sampler.run(config))[-1]
    assert isinstance(with_graph, Done) and isinstance(eager, Done)
    assert [image.tobytes() for image in with_graph.images] == [image.tobytes() for image in eager.images]


def test_nan_logits_raise_and_leave_cuda_usable(prior: Prior) -> None:
    with torch.no_grad():
        prior.gpt.head.weight[3, 0] = float("nan")
    for step in (None, FixedStep(prior.gpt, 1, 256, graph=True)):
        with pytest.raises(NonFiniteLogitsError, match="at row 1"):
            _sample(prior, prior.gpt, 1, step)
    torch.cuda.synchronize()  # a device-side assert would surface here and poison every later call
    assert torch.ones(3, device="cuda").sum().item() == 3.0


def test_out_of_memory_names_the_gpu(prior: Prior, monkeypatch: pytest.MonkeyPatch) -> None:
    def decode(*args) -> list:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(pipeline, "_decode", decode)
    with pytest.raises(OutOfMemoryError) as caught:
        list(Sampler(prior).run(SampleConfig.from_dict({"n": 1, "batch_size": 1, "seed": 0})))
    index = torch.cuda.current_device()
    assert str(caught.value).startswith(f"GPU cuda:{index} ran out of memory decoding 1 image of 32x32; try")
