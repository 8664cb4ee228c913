"""Tokens per second of prior sampling: KV cache vs full recomputation, and the sliding window.

FFHQ shapes (vocab 1024, block 256, width 1664, 16 heads, 24 layers) with random weights:
speed does not depend on the values. On a GPU the full 24 layers run; on the CPU the default
is 1 layer (the ratio cached/recomputed is what matters there). Prints one JSON line per
measurement, then the cached/recomputed ratio per batch size. Usage:

    python bench/prior.py                      # auto device, batch 1 and 16, then the sliding window
    python bench/prior.py --device cpu --layers 1 --batches 1 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import emit, machine, peak_mb, reset_peak
from generator.devices import autocast, autocast_dtype, pick_device
from generator.prior.sampling import SamplingSettings, sample_in_window, sample_sliding
from models.gpt import GPT, GPTConfig


def build(layers: int, device: torch.device) -> GPT:
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=1024, block_size=256, n_layer=layers, n_head=16, n_embd=1664))
    with torch.no_grad():
        for parameter in gpt.parameters():
            parameter.normal_(0, 0.02)
    return gpt.eval().requires_grad_(False).to(device)


def timed(device: torch.device, work) -> tuple[float, torch.Tensor]:
    reset_peak(device)
    started = time.perf_counter()
    result = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--layers", type=int, default=None, help="default: 24 on a GPU, 1 on the CPU")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--sliding-grid", type=int, default=32, help="side of the sliding-window grid (0: skip)")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    layers = args.layers or (24 if device.type == "cuda" else 1)
    gpt = build(layers, device)
    dtype = autocast_dtype(device, args.precision)
    settings = SamplingSettings(temperature=1.0, top_k=250)
    base = {"bench": "prior", **machine(device), "layers": layers, "width": 1664, "precision": str(dtype or "float32")}

    def run_window(batch: int, use_cache: bool) -> torch.Tensor:
        tokens = torch.zeros(batch, 256, dtype=torch.long, device=device)
        cond = torch.zeros(batch, 1, dtype=torch.long, device=device)
        with autocast(device, dtype):
            for _ in sample_in_window(gpt, cond, tokens, 16, start=0, settings=settings,
                                      generator=torch.Generator(device).manual_seed(0), use_cache=use_cache):
                pass
        return tokens

    run_window(1, True)  # warm-up
    for batch in args.batches:
        rates = {}
        results = {}
        for use_cache in (True, False):
            def work(batch: int = batch, use_cache: bool = use_cache) -> torch.Tensor:
                return run_window(batch, use_cache)

            seconds, results[use_cache] = timed(device, work)
            rates[use_cache] = batch * 256 / seconds
            emit({**base, "mode": "cached" if use_cache else "recomputed", "batch": batch, "tokens": 256,
                  "seconds": round(seconds, 3), "tokens_per_second": round(rates[use_cache], 1),
                  "peak_memory_mb": round(peak_mb(device), 1)})
        emit({**base, "mode": "ratio", "batch": batch, "cached_over_recomputed": round(rates[True] / rates[False], 1),
              "identical_tokens": bool(torch.equal(results[True], results[False]))})

    if args.sliding_grid:
        side = args.sliding_grid

        def run_sliding() -> torch.Tensor:
            tokens = torch.zeros(1, side, side, dtype=torch.long, device=device)
            cond = torch.zeros(1, 1, dtype=torch.long, device=device)
            with autocast(device, dtype):
                for _ in sample_sliding(gpt, cond, tokens, (16, 16), start=0, settings=settings,
                                        generator=torch.Generator(device).manual_seed(0)):
                    pass
            return tokens

        seconds, _ = timed(device, run_sliding)
        emit({**base, "mode": "sliding", "batch": 1, "grid": f"{side}x{side}", "tokens": side * side,
              "seconds": round(seconds, 3), "tokens_per_second": round(side * side / seconds, 1),
              "peak_memory_mb": round(peak_mb(device), 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
