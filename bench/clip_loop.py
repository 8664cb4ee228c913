"""Steps per second and peak memory of the CLIP-guided loop at the official model shapes.

VQGAN f16-16384 (76 M parameters) and CLIP ViT-B/32 (151 M) with random weights: speed does
not depend on the values. Every (size, cutn) pair runs in its own process and prints one JSON
line. Usage:

    python bench/clip_loop.py                         # 256 and 512 px, cutn 32 and 64, auto device
    python bench/clip_loop.py --device cpu --steps 2 --sizes 256 --cutn 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import commit, emit, machine, peak_mb, reset_peak, run_isolated
from generator.config import ClipModelConfig, GenerationConfig, ModelsConfig
from generator.devices import pick_device
from generator.events import Progress
from generator.text_to_image.loader import load_clip
from generator.text_to_image.pipeline import TextToImage
from models.vqgan import VQGAN, VQGANConfig


def measure(device: torch.device, size: int, cutn: int, steps: int, warmup: int, precision: str,
            compile: bool = False, recompute: str = "auto") -> dict:
    vqgan = VQGAN(VQGANConfig()).eval().requires_grad_(False).to(device)
    if device.type == "cuda":
        vqgan = vqgan.to(memory_format=torch.channels_last)
    clip = load_clip("ViT-B-32", None, device=device, quick_gelu=True)
    models = ModelsConfig(vqgan="random f16-16384", clip_models=(ClipModelConfig("ViT-B-32", None),))
    pipeline = TextToImage(vqgan, [clip], models=models, device=device)
    config = GenerationConfig(prompts="city at night", size=(size, size), steps=warmup + steps, seed=0,
                              precision=precision, compile=compile, recompute=recompute, models=models)
    config = GenerationConfig.from_dict({**config.to_dict(), "cutouts": {"cutn": cutn}})
    reset_peak(device)
    stamps = []
    for event in pipeline.run(config):
        if isinstance(event, Progress):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(time.perf_counter())
    timed = stamps[warmup:]
    if warmup:
        seconds = (timed[-1] - stamps[warmup - 1]) / len(timed)
    else:
        seconds = (timed[-1] - timed[0]) / max(len(timed) - 1, 1)
    return {"bench": "clip_loop", "commit": commit(), **machine(device), "size": size, "cutn": cutn,
            "precision": precision, "compile": compile, "recompute": recompute,
            "steps_timed": len(timed), "seconds_per_step": round(seconds, 4),
            "steps_per_second": round(1 / seconds, 3), "peak_memory_mb": round(peak_mb(device), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--cutn", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on a GPU, 3 on the CPU)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--recompute", default="auto", help="decoder levels recomputed in backward: auto, off, decoder")
    parser.add_argument("--compile", action="store_true", help="torch.compile the decoder and CLIP (the warm-up "
                                                               "steps include compiling)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = pick_device(args.device)
    steps = args.steps or (20 if device.type == "cuda" else 3)
    if args.one:
        emit(measure(device, args.sizes[0], args.cutn[0], steps, args.warmup, args.precision, args.compile,
                     args.recompute))
        return 0
    status = 0
    for size in args.sizes:
        for cutn in args.cutn:
            flags = ["--one", "--device", str(device), "--sizes", str(size), "--cutn", str(cutn),
                     "--steps", str(steps), "--warmup", str(args.warmup), "--precision", args.precision,
                     "--recompute", args.recompute, *(["--compile"] if args.compile else [])]
            status |= run_isolated(__file__, flags)
    return status


if __name__ == "__main__":
    sys.exit(main())
