"""CUDA paths (autocast, channels_last, half-precision tiles, CUDA generators); skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.events import Done
from generator.guidance.pipeline import TextToImage
from tests.factories import tiny_run_config

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_generator(tiny_files) -> TextToImage:
    return TextToImage.from_pretrained(tiny_files.models(), device="cuda")


def test_text_to_image_on_cuda_is_finite_and_reproducible(cuda_generator: TextToImage, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=8, cutouts={"augments": ["jitter", "erasing", "noise"]})
    first = cuda_generator(config)
    again = cuda_generator(config)
    assert isinstance(first, Done) and first.images[0].size == (32, 32)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16", "fp32"])
def test_every_precision_runs_on_cuda(cuda_generator: TextToImage, tiny_files, precision: str) -> None:
    done = cuda_generator(tiny_run_config(tiny_files, steps=3, precision=precision))
    assert np.isfinite(np.asarray(done.images[0], dtype=np.float32)).all()


def test_cached_equals_recomputed_on_cuda(tmp_path) -> None:
    from generator.prior.conditioning import start_tokens
    from generator.prior.loader import load_prior
    from generator.prior.sampling import SamplingSettings, sample_in_window
    from tests.prior_factories import save_tiny_prior

    prior = load_prior(save_tiny_prior(tmp_path, "sos").checkpoint, device="cuda")
    results = []
    for use_cache in (True, False):
        tokens = torch.zeros(2, 256, dtype=torch.long, device="cuda")
        list(sample_in_window(prior.gpt, start_tokens(prior, 2, None), tokens, 16, start=0,
                              settings=SamplingSettings(top_k=8), generator=torch.Generator("cuda").manual_seed(3),
                              use_cache=use_cache))
        results.append(tokens.cpu())
    assert torch.equal(results[0], results[1])


def test_half_precision_tiles_match_float32(tmp_path) -> None:
    from generator.upscale.loader import load_upscaler
    from generator.upscale.tiles import run_to_end, upscale_pixels
    from tests.upscaler_factories import compact_state, save_upscaler

    upscaler = load_upscaler(str(save_upscaler(compact_state(), tmp_path / "c.pth", "params")), device="cuda")
    assert upscaler.half_dtype() in (torch.float16, torch.bfloat16)
    pixels = torch.rand(1, 3, 67, 45)
    half = run_to_end(upscale_pixels(upscaler, pixels, tile=32))
    full = run_to_end(upscale_pixels(upscaler, pixels, tile=0, precision="fp32"))
    assert half.device.type == "cpu" and torch.isfinite(half).all()
    assert (half - full).abs().max() < 0.03
