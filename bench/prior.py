"""Tokens per second of prior sampling: KV cache vs full recomputation (vs the CUDA-graph step on a
GPU), and the sliding window.

FFHQ shapes (vocab 1024, block 256, width 1664, 16 heads, 24 layers) with random weights:
speed does not depend on the values. On a GPU the full 24 layers run; on the CPU the default
is 1 layer (the ratio cached/recomputed is what matters there). Every path timed is first
warmed up at the same batch size (its first row, and for recomputation one forward pass over
the whole window), so no path pays for first-call setup the others were spared. The
transformer runs in the dtype ``--precision`` means for the prior (``prior_dtype``: bf16 on a
CPU with bf16 units, the GPU's half precision on CUDA); its half-precision copy of the weights
is made once and timed on its own. Prints one JSON line per measurement (each with the commit
measured), then the ratios per batch size, and how far the precision's logits are from
float32. Usage:

    python bench/prior.py                                  # auto device, batch 1 and 16, sliding window
    python bench/prior.py --quick                          # CPU, 1 layer, batch 1: under 2 minutes
    python bench/prior.py --device cpu --layers 1 --batches 1 16 --precision fp32
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import commit, emit, machine, peak_mb, reset_peak
from generator.devices import pick_device
from generator.sample.fixed_step import FixedStep
from generator.sample.sampling import SamplingSettings, prior_dtype, sample_in_window, sample_sliding
from models.gpt import GPT, GPTConfig, linear_dtype, with_linear_dtype

TOKENS = 256  # a 16x16 grid after the start token


def build(layers: int, device: torch.device) -> GPT:
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=1024, block_size=256, n_layer=layers, n_head=16, n_embd=1664))
    with torch.no_grad():
        for parameter in gpt.parameters():
            parameter.normal_(0, 0.02)
    return gpt.eval().requires_grad_(False).to(device)


def timed(device: torch.device, work: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    reset_peak(device)
    started = time.perf_counter()
    result = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, result


def sample_window(gpt: GPT, batch: int, mode: str, step: FixedStep | None, rows: int = 16) -> torch.Tensor:
    """``rows`` rows of a 16x16 grid at ``batch``: ``cached``, ``recomputed`` or ``graph`` (with ``step``)."""
    device = gpt.pos_emb.device
    tokens = torch.zeros(batch, TOKENS, dtype=torch.long, device=device)
    cond = torch.zeros(batch, 1, dtype=torch.long, device=device)
    for row in sample_in_window(gpt, cond, tokens, 16, start=0, settings=SamplingSettings(temperature=1.0, top_k=250),
                                generator=torch.Generator(device).manual_seed(0), use_cache=mode != "recomputed",
                                step=step if mode == "graph" else None):
        if row + 1 == rows:
            break
    return tokens


def warm_up(gpt: GPT, batch: int, mode: str, step: FixedStep | None) -> None:
    """The first row of the path at this batch size, and for recomputation one whole-window pass."""
    device = gpt.pos_emb.device
    sample_window(gpt, batch, mode, step, rows=1)
    if mode == "recomputed":
        with torch.inference_mode():
            gpt(torch.zeros(batch, TOKENS, dtype=torch.long, device=device), last_only=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_check(fp32: GPT, gpt: GPT, device: torch.device) -> dict:
    """Teacher-forced logits of a random sequence in the run's dtype against float32."""
    idx = torch.randint(1024, (1, TOKENS), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.inference_mode():
        full, half = fp32(idx).float(), gpt(idx).float()
    error = (half - full).abs()
    return {"top1_agreement": round(float((half.argmax(-1) == full.argmax(-1)).float().mean()), 4),
            "max_abs_error_over_std": round(float(error.max() / full.std()), 4),
            "mean_abs_error_over_std": round(float(error.mean() / full.std()), 5)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--layers", type=int, default=None, help="default: 24 on a GPU, 1 on the CPU")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--sliding-grid", type=int, default=None,
                        help="side of the sliding-window grid (0: skip; default 32, 20 with --quick)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--quick", action="store_true", help="CPU, 1 layer, batch 1, a 20x20 sliding grid")
    args = parser.parse_args()
    if args.quick:
        args.device, args.layers, args.batches = "cpu", args.layers or 1, [1]
    device = pick_device(args.device)
    layers = args.layers or (24 if device.type == "cuda" else 1)
    side = args.sliding_grid if args.sliding_grid is not None else (20 if args.quick else 32)
    fp32 = build(layers, device)
    dtype = prior_dtype(device, args.precision)
    cast_seconds, gpt = timed(device, lambda: with_linear_dtype(fp32, dtype))
    base = {"bench": "prior", "commit": commit(), **machine(device), "layers": layers, "width": 1664,
            "precision": str(linear_dtype(gpt)).removeprefix("torch.")}
    emit({**base, "mode": "precision", "cast_seconds": round(cast_seconds, 3), **precision_check(fp32, gpt, device)})
    if gpt is not fp32:
        del fp32

    for batch in args.batches:
        modes = ["cached", "recomputed"]
        step = None
        if device.type == "cuda" and batch == 1:
            capture_seconds, step = timed(device, lambda batch=batch: FixedStep(gpt, batch, TOKENS, graph=True))
            emit({**base, "mode": "graph capture", "batch": batch, "seconds": round(capture_seconds, 3),
                  "captured": step.graph is not None})
            modes.insert(0, "graph")
        rates, results = {}, {}
        for mode in modes:
            warm_up(gpt, batch, mode, step)
            seconds, results[mode] = timed(device, lambda mode=mode, batch=batch, step=step: sample_window(
                gpt, batch, mode, step))
            rates[mode] = batch * TOKENS / seconds
            emit({**base, "mode": mode, "batch": batch, "tokens": TOKENS, "seconds": round(seconds, 3),
                  "tokens_per_second": round(rates[mode], 1), "peak_memory_mb": round(peak_mb(device), 1)})
        ratios = {f"{mode}_over_recomputed": round(rates[mode] / rates["recomputed"], 1) for mode in modes[:-1]}
        same = {f"{mode}_identical_to_recomputed": bool(torch.equal(results[mode], results["recomputed"]))
                for mode in modes[:-1]}
        emit({**base, "mode": "ratio", "batch": batch, **ratios, **same})

    if side:
        def run_sliding() -> torch.Tensor:
            tokens = torch.zeros(1, side, side, dtype=torch.long, device=device)
            cond = torch.zeros(1, 1, dtype=torch.long, device=device)
            for _ in sample_sliding(gpt, cond, tokens, (16, 16), start=0, settings=SamplingSettings(top_k=250),
                                    generator=torch.Generator(device).manual_seed(0)):
                pass
            return tokens

        warm_up(gpt, 1, "recomputed", None)  # the same forward passes over windows
        seconds, _ = timed(device, run_sliding)
        emit({**base, "mode": "sliding", "batch": 1, "grid": f"{side}x{side}", "tokens": side * side,
              "seconds": round(seconds, 3), "tokens_per_second": round(side * side / seconds, 1),
              "peak_memory_mb": round(peak_mb(device), 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
