"""The fixed-shape cached step (what a CUDA graph captures), run eagerly on the CPU: it must give
the tokens of the ordinary cached path, position by position and batch after batch."""

from __future__ import annotations

import logging

import pytest
import torch

from generator.sample.conditioning import coordinate_tokens, start_tokens
from generator.sample.fixed_step import CachedStep, FixedStep
from generator.sample.loader import load_prior
from generator.sample.sampling import SamplingSettings, sample_in_window, window_step
from models.gpt import KVCache, with_linear_dtype
from tests.prior_factories import save_tiny_prior


@pytest.fixture(scope="module")
def priors(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("fixed-step")
    return {kind: load_prior(save_tiny_prior(directory, kind).checkpoint) for kind in ("sos", "coord")}


def _sample(gpt, cond: torch.Tensor, batch: int, start: int, step, seed: int = 4) -> torch.Tensor:
    tokens = torch.zeros(batch, 256, dtype=torch.long)
    tokens[:, :start] = torch.arange(start) % 16  # an image being completed
    rows = list(sample_in_window(gpt, cond, tokens, 16, start=start, settings=SamplingSettings(1.0, 8, 0.95),
                                 generator=torch.Generator().manual_seed(seed), step=step))
    assert rows == list(range(start // 16, 16))
    return tokens


@pytest.mark.parametrize(("kind", "batch", "start"), [("sos", 1, 0), ("sos", 3, 0), ("sos", 1, 100), ("coord", 2, 0)])
def test_fixed_step_gives_the_tokens_of_the_cached_path(priors: dict, kind: str, batch: int, start: int) -> None:
    prior = priors[kind]
    cond = (coordinate_tokens(prior, (16, 16), batch) if kind == "coord" else start_tokens(prior, batch, None))
    cond = cond.reshape(batch, -1)
    length = cond.shape[1] + 256 - 1
    cached = _sample(prior.gpt, cond, batch, start, None)
    fixed = _sample(prior.gpt, cond, batch, start, FixedStep(prior.gpt, batch, length))
    assert torch.equal(fixed, cached)
    assert len(cached[:, start:].unique()) > 4  # really sampled


def test_one_fixed_step_serves_every_batch_of_a_run(priors: dict) -> None:
    """Reused, the cache still holds the previous batch's keys after the position: masked, they
    must not matter."""
    prior = priors["sos"]
    cond = start_tokens(prior, 1, None)
    step = FixedStep(prior.gpt, 1, 256)
    first = _sample(prior.gpt, cond, 1, 0, step, seed=1)
    second = _sample(prior.gpt, cond, 1, 0, step, seed=2)
    assert not torch.equal(first, second)
    assert torch.equal(second, _sample(prior.gpt, cond, 1, 0, None, seed=2))


def test_fixed_step_logits_equal_the_cached_forward_at_every_position(priors: dict) -> None:
    gpt = with_linear_dtype(priors["sos"].gpt, torch.bfloat16)
    idx = torch.randint(16, (2, 40), generator=torch.Generator().manual_seed(0))
    fixed = FixedStep(gpt, 2, 40)
    cache = KVCache(gpt.config, 2, 40, device="cpu", dtype=torch.bfloat16)
    with torch.inference_mode():
        torch.testing.assert_close(fixed.prefill(idx[:, :5]), gpt(idx[:, :5], cache=cache, last_only=True)[:, -1])
        for position in range(5, 40):
            expected = gpt(idx[:, position : position + 1], cache=cache, last_only=True)[:, -1]
            torch.testing.assert_close(fixed(idx[:, position], position), expected, rtol=0.02, atol=0.02)
    assert fixed.dtype == torch.bfloat16 and fixed.cache.keys.dtype == torch.bfloat16


def test_a_step_that_does_not_fit_the_grid_is_refused(priors: dict) -> None:
    prior = priors["sos"]
    with pytest.raises(ValueError, match=r"decodes 1 x 200 positions in torch.float32, not 1 x 256"):
        _sample(prior.gpt, start_tokens(prior, 1, None), 1, 0, FixedStep(prior.gpt, 1, 200))
    with pytest.raises(ValueError, match="in torch.float32, not 1 x 256 in torch.bfloat16"):
        list(sample_in_window(prior.gpt, start_tokens(prior, 1, None), torch.zeros(1, 256, dtype=torch.long), 16,
                              start=0, settings=SamplingSettings(), generator=torch.Generator(),
                              dtype=torch.bfloat16, step=FixedStep(prior.gpt, 1, 256)))
    with pytest.raises(ValueError, match="is not the next"):
        CachedStep(prior.gpt, 1, 10)(torch.zeros(1, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        FixedStep(prior.gpt, 1, 10, graph=True)


def test_eager_is_what_the_cpu_uses(priors: dict) -> None:
    assert window_step(priors["sos"].gpt, 1, 256) is None


def test_a_failed_capture_falls_back_to_the_eager_step(priors: dict, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    prior = priors["sos"]
    step = FixedStep(prior.gpt, 1, 256)

    def no_stream(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "Stream", no_stream)
    with caplog.at_level(logging.WARNING, logger="generator.sample.fixed_step"):
        step._capture()
    assert step.graph is None
    assert "could not capture the prior's decoding step as a CUDA graph (operation not permitted" in caplog.text
    cond = start_tokens(prior, 1, None)
    assert torch.equal(_sample(prior.gpt, cond, 1, 0, step), _sample(prior.gpt, cond, 1, 0, None))
