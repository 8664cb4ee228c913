"""Prior runs as a server drives them: resumed on other threads, stopped from another thread,
out of memory part-way, given non-finite logits; and the precision ``auto`` picks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from generator.config import SampleConfig
from generator.errors import OutOfMemoryError
from generator.events import Done, Progress
from generator.sample import pipeline, sampling
from generator.sample.conditioning import start_tokens
from generator.sample.fixed_step import CachedStep
from generator.sample.loader import Prior, load_prior
from generator.sample.pipeline import Sampler
from generator.sample.sampling import (
    Draws,
    NonFiniteLogitsError,
    SamplingSettings,
    prior_dtype,
    sample_in_window,
    sample_sliding,
)
from models.gpt import GPT, GPTConfig, linear_dtype, with_linear_dtype
from tests.prior_factories import TinyPrior, save_tiny_prior


@pytest.fixture(scope="module")
def sos(tmp_path_factory: pytest.TempPathFactory) -> TinyPrior:
    return save_tiny_prior(tmp_path_factory.mktemp("runtime"), "sos")


def _config(**settings) -> SampleConfig:
    return SampleConfig.from_dict({"n": 2, "batch_size": 1, "seed": 11, **settings})


def _record_decoded(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Every token grid the run hands to the VQGAN, in order."""
    grids: list[torch.Tensor] = []
    original = pipeline._decode

    def recording(prior: Prior, tokens: torch.Tensor, dtype: torch.dtype | None) -> list:
        grids.append(tokens.clone())
        return original(prior, tokens, dtype)

    monkeypatch.setattr(pipeline, "_decode", recording)
    return grids


def _thread_state() -> tuple[bool, torch.dtype]:
    """Whether this thread has CPU autocast on, and what a float32 Linear gives here."""
    torch.manual_seed(0)
    return torch.is_autocast_enabled("cpu"), torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype


# --- autocast is not held across a yield ---------------------------------------------------------


def test_a_run_resumed_on_other_threads_and_stopped_from_a_third(sos: TinyPrior,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio calls each next() of a job on some worker thread and close() from another on Stop:
    with bf16 the tokens must be those of a single-thread run, and no thread may keep autocast."""
    sampler = Sampler(load_prior(sos.checkpoint))
    dtypes: list[torch.dtype] = []
    original_cast = pipeline.with_linear_dtype

    def cast(gpt: GPT, dtype: torch.dtype | None) -> GPT:
        copy = original_cast(gpt, dtype)
        dtypes.append(linear_dtype(copy))
        return copy

    monkeypatch.setattr(pipeline, "with_linear_dtype", cast)
    grids = _record_decoded(monkeypatch)
    alone = list(sampler.run(_config(precision="bf16")))
    expected, grids[:] = list(grids), []
    assert isinstance(alone[-1], Done) and dtypes == [torch.bfloat16]  # the prior really ran in bf16

    workers = [ThreadPoolExecutor(1) for _ in range(3)]
    try:
        run = sampler.run(_config(precision="bf16"))
        events, turn = [], 0
        while True:
            try:
                events.append(workers[turn % 2].submit(next, run).result())
            except StopIteration:
                break
            turn += 1
        assert turn > 30  # every row of both images, each resumed on the other thread
        assert isinstance(events[-1], Done) and len(events[-1].images) == 2
        assert len(grids) == len(expected) == 2
        assert all(torch.equal(a, b) for a, b in zip(grids, expected, strict=True))

        stopped = sampler.run(_config(precision="bf16"))
        for turn in range(5):
            assert isinstance(workers[turn % 2].submit(next, stopped).result(), Progress)
        workers[2].submit(stopped.close).result()
        assert [worker.submit(_thread_state).result() for worker in workers] == [(False, torch.float32)] * 3
    finally:
        for worker in workers:
            worker.shutdown()
    assert _thread_state() == (False, torch.float32)


def test_ambient_autocast_does_not_change_what_is_sampled(sos: TinyPrior) -> None:
    """The sampler's precision is its dtype argument; a caller's autocast region is ignored."""
    prior = load_prior(sos.checkpoint)
    results = []
    for ambient in (False, True):
        tokens = torch.zeros(2, 256, dtype=torch.long)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=ambient):
            list(sample_in_window(prior.gpt, start_tokens(prior, 2, None), tokens, 16, start=0,
                                  settings=SamplingSettings(top_k=8), generator=torch.Generator().manual_seed(2)))
        results.append(tokens)
    assert torch.equal(results[0], results[1])


# --- non-finite logits ---------------------------------------------------------------------------


def test_draws_never_hand_non_finite_rows_to_multinomial_and_report_them_at_the_row_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.Tensor] = []
    original = torch.multinomial

    def checked(probs: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        seen.append(probs.clone())
        return original(probs, *args, **kwargs)

    monkeypatch.setattr(sampling.torch, "multinomial", checked)
    draws = Draws(SamplingSettings(top_k=2), torch.Generator().manual_seed(0), torch.bfloat16)
    finite = torch.tensor([[0.0, 3.0, 1.0, -1.0], [2.0, 0.0, 0.0, 0.0]])
    assert int(draws(finite)[0]) in (1, 2)  # the top two of the first row
    draws.check(0)  # all finite: nothing to report, and the flag is reset

    for bad in (float("nan"), float("inf"), float("-inf")):
        logits = finite.clone()
        logits[1, 2] = bad
        tokens = draws(logits)  # no error yet: the check waits for the row's end
        assert tokens.shape == (2,) and 0 <= int(tokens[1]) < 4
        draws(finite)
        with pytest.raises(NonFiniteLogitsError, match=r"being numbers \(NaN or infinite\) in bfloat16 at row 4"):
            draws.check(3)
        draws.check(4)  # reported once
    assert all(bool(torch.isfinite(probs).all()) for probs in seen) and len(seen) == 7


def _broken(prior: Prior) -> Prior:
    with torch.no_grad():
        prior.gpt.blocks[0].mlp[0].weight[0, 0] = float("nan")
    return prior


def test_nan_weights_stop_sampling_with_a_clear_error(sos: TinyPrior) -> None:
    prior = _broken(load_prior(sos.checkpoint))
    tokens = torch.zeros(1, 256, dtype=torch.long)
    rows = sample_in_window(prior.gpt, start_tokens(prior, 1, None), tokens, 16, start=0, settings=SamplingSettings(),
                            generator=torch.Generator().manual_seed(0))
    with pytest.raises(NonFiniteLogitsError, match="in float32 at row 1, so sampling stopped; run again with "
                                                   "--precision fp32, and if float32 fails too"):
        next(rows)
    sliding = sample_sliding(prior.gpt, start_tokens(prior, 1, None), torch.zeros(1, 16, 20, dtype=torch.long),
                             (16, 16), start=0, settings=SamplingSettings(), generator=torch.Generator().manual_seed(0))
    with pytest.raises(NonFiniteLogitsError, match="at row 1"):
        next(sliding)
    with pytest.raises(NonFiniteLogitsError, match="in bfloat16 at row 1"):
        list(Sampler(prior).run(_config(precision="bf16")))


# --- out of memory ---------------------------------------------------------------------------------


def _watch_release(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.device, object]]:
    """Each release_memory call with the exception being handled at that moment (None: none)."""
    calls: list[tuple[torch.device, object]] = []
    monkeypatch.setattr(pipeline, "release_memory", lambda device: calls.append((device, sys.exc_info()[0])))
    return calls


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")])
def test_out_of_memory_while_decoding_keeps_the_finished_images(sos: TinyPrior, monkeypatch: pytest.MonkeyPatch,
                                                               error: Exception) -> None:
    sizes: list[int] = []
    original = pipeline._decode

    def decode(prior: Prior, tokens: torch.Tensor, dtype: torch.dtype | None) -> list:
        sizes.append(tokens.shape[0])
        if len(sizes) == 2:
            raise error
        return original(prior, tokens, dtype)

    monkeypatch.setattr(pipeline, "_decode", decode)
    released = _watch_release(monkeypatch)
    run = Sampler(load_prior(sos.checkpoint)).run(_config(n=6, batch_size=6))
    with pytest.raises(OutOfMemoryError) as caught:
        list(run)
    assert str(caught.value) == ("the CPU ran out of memory decoding 6 images of 32x32; the 4 finished images are "
                                 "kept; try a smaller --batch-size or --size.")
    assert sizes == [pipeline.DECODE_CHUNK, 6 - pipeline.DECODE_CHUNK] and len(run.state.images) == 4
    assert caught.value.__context__ is None  # raised after the except block: no failed tensors kept alive
    assert released == [(torch.device("cpu"), None)]
    assert run.latest_image() is not None  # the batch's sheet still decodes


def test_out_of_memory_while_sampling_names_the_device_and_keeps_earlier_batches(
        sos: TinyPrior, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = []
    original = CachedStep.__call__

    def step(self: CachedStep, token: torch.Tensor, position: int) -> torch.Tensor:
        steps.append(position)
        if len(steps) == 255 + 40:  # in the second image
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return original(self, token, position)

    monkeypatch.setattr(CachedStep, "__call__", step)
    released = _watch_release(monkeypatch)
    run = Sampler(load_prior(sos.checkpoint)).run(_config())
    with pytest.raises(OutOfMemoryError) as caught:
        list(run)
    assert str(caught.value) == ("the CPU ran out of memory sampling 1 image of 32x32; the 1 finished image is kept; "
                                 "try a smaller --batch-size or --size.")
    assert len(run.state.images) == 1 and run.state.step == 16 + 2
    assert caught.value.__context__ is None and released == [(torch.device("cpu"), None)]


def test_other_runtime_errors_are_not_taken_for_out_of_memory(sos: TinyPrior, monkeypatch: pytest.MonkeyPatch) -> None:
    def decode(*args) -> list:
        raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(pipeline, "_decode", decode)
    released = _watch_release(monkeypatch)
    with pytest.raises(RuntimeError, match="same device"):
        list(Sampler(load_prior(sos.checkpoint)).run(_config(n=1)))
    assert released == []


# --- precision ---------------------------------------------------------------------------------------


def test_what_each_precision_means_for_the_prior(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(sampling, "cpu_has_native_bf16", lambda native=native: native)
        assert prior_dtype(cpu, "auto") == (torch.bfloat16 if native else None)
        assert prior_dtype(cpu, "bf16") == torch.bfloat16
        assert prior_dtype(cpu, "fp16") is None and prior_dtype(cpu, "fp32") is None
    monkeypatch.setattr(sampling, "cuda_half_dtype", lambda device: torch.float16)  # a GPU before Ampere
    cuda = torch.device("cuda", 0)
    assert prior_dtype(cuda, "auto") == torch.float16 and prior_dtype(cuda, "bf16") == torch.bfloat16
    assert prior_dtype(cuda, "fp16") == torch.float16 and prior_dtype(cuda, "fp32") is None


def test_bf16_projections_stay_close_to_float32() -> None:
    """The stated tolerance of bf16 sampling, teacher-forced on a small random model: the most
    likely token the same at 97% of positions or more, logits within 5% of their spread (1% on
    average); measured about 98%, 3.4% and 0.55%. The numbers are those of CPU autocast bf16,
    which the half-precision copy reproduces exactly."""
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=256, block_size=128, n_layer=3, n_head=4, n_embd=128)).eval()
    with torch.no_grad():
        for name, parameter in gpt.named_parameters():
            if not name.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")):
                parameter.normal_(0, 0.08)
    idx = torch.randint(256, (4, 128))
    with torch.inference_mode():
        full = gpt(idx)
        half_gpt = with_linear_dtype(gpt, torch.bfloat16)
        half = half_gpt(idx).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = gpt(idx).float()
    assert linear_dtype(half_gpt) == torch.bfloat16 and linear_dtype(gpt) == torch.float32  # the original untouched
    assert half_gpt.pos_emb.data_ptr() == gpt.pos_emb.data_ptr()  # shared, not copied
    error = (half - full).abs() / full.std()
    agreement = (half.argmax(-1) == full.argmax(-1)).float().mean()
    assert agreement >= 0.97 and error.max() < 0.05 and error.mean() < 0.01, \
        (float(agreement), float(error.max()), float(error.mean()))
    assert torch.equal(half, autocast)
    assert with_linear_dtype(gpt, None) is gpt and with_linear_dtype(half_gpt, torch.bfloat16) is half_gpt


def test_auto_precision_samples_in_what_prior_dtype_picks(sos: TinyPrior, monkeypatch: pytest.MonkeyPatch) -> None:
    picked: list[torch.dtype] = []
    original: Callable = CachedStep.__init__

    def init(self: CachedStep, gpt: GPT, batch: int, max_length: int) -> None:
        original(self, gpt, batch, max_length)
        picked.append(self.dtype)

    monkeypatch.setattr(CachedStep, "__init__", init)
    sampler = Sampler(load_prior(sos.checkpoint))
    list(sampler.run(_config(n=1, precision="auto")))
    list(sampler.run(_config(n=1, precision="fp32")))
    assert picked == [prior_dtype(torch.device("cpu"), "auto") or torch.float32, torch.float32]


def test_the_loaded_prior_stays_float32(sos: TinyPrior) -> None:
    sampler = Sampler(load_prior(sos.checkpoint))
    list(sampler.run(_config(n=1, precision="bf16")))
    assert {p.dtype for p in sampler.prior.gpt.parameters()} == {torch.float32}
