"""Seconds per animation frame at the official model shapes: move the previous frame,
re-encode it with the VQGAN, optimise it for ``--steps-per-frame`` steps, decode it.

VQGAN f16-16384 and CLIP ViT-B/32 with random weights (speed does not depend on the values),
zoom 1.02 and a 1-degree turn per frame, no files written. The first frame (the same number
of steps) is the warm-up; the frames after it are timed. Random weights drift into
non-finite losses after some 20 steps at the default learning rate, so the bench uses
``--lr 0.02`` and float32 (neither changes the work of a step), and if the losses still stop
being finite it reports the frames timed until then. Prints one JSON line. Usage:

    python bench/animate.py                                   # 256 px, 10 steps/frame, 32 cutouts, auto device
    python bench/animate.py --device cpu --frames 3 --size 256 --steps-per-frame 10 --cutn 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import commit, emit, machine, peak_mb, reset_peak
from generator.animate.config import AnimationConfig
from generator.animate.pipeline import Animator
from generator.config import ClipModelConfig, ModelsConfig
from generator.devices import pick_device
from generator.errors import NonFiniteError
from generator.events import Preview
from generator.text_to_image.loader import load_clip
from generator.text_to_image.pipeline import TextToImage
from models.vqgan import VQGAN, VQGANConfig


def measure(device: torch.device, size: int, cutn: int, steps: int, frames: int, precision: str,
            lr: float) -> dict:
    vqgan = VQGAN(VQGANConfig()).eval().requires_grad_(False).to(device)
    if device.type == "cuda":
        vqgan = vqgan.to(memory_format=torch.channels_last)
    clip = load_clip("ViT-B-32", None, device=device, quick_gelu=True)
    models = ModelsConfig(vqgan="random f16-16384", clip_models=(ClipModelConfig("ViT-B-32", None),))
    animator = Animator(TextToImage(vqgan, [clip], models=models, device=device))
    config = AnimationConfig.from_dict({
        "prompts": "a fractal forest", "size": [size, size], "seed": 0, "precision": precision,
        "frames": frames + 1, "steps_per_frame": steps, "first_frame_steps": steps, "cutouts": {"cutn": cutn},
        "optim": {"lr": lr},
        "motion": {"zoom": "1.02", "angle": "1"}, "models": AnimationConfig(models=models).to_dict()["models"]})
    reset_peak(device)
    stamps, stopped = [], None
    try:
        for event in animator.run(config):
            if isinstance(event, Preview) and event.stage == "frame":
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                stamps.append(time.perf_counter())
    except NonFiniteError as error:
        stopped = str(error)
        if len(stamps) < 2:
            raise
    seconds = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return {"bench": "animate", "commit": commit(), **machine(device), "size": size, "cutn": cutn,
            "steps_per_frame": steps, "precision": precision, "lr": lr, "frames_timed": len(stamps) - 1,
            "seconds_per_frame": round(seconds, 3), "seconds_per_step": round(seconds / max(steps, 1), 4),
            "peak_memory_mb": round(peak_mb(device), 1), **({"stopped": stopped} if stopped else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cutn", type=int, default=32)
    parser.add_argument("--steps-per-frame", type=int, default=10)
    parser.add_argument("--frames", type=int, default=None, help="timed frames (default: 20 on a GPU, 3 on the CPU)")
    parser.add_argument("--precision", default="fp32", help="fp32 (default), auto, bf16 or fp16")
    parser.add_argument("--lr", type=float, default=0.02, help="learning rate (random weights diverge at 0.1)")
    args = parser.parse_args()
    device = pick_device(args.device)
    frames = args.frames or (20 if device.type == "cuda" else 3)
    emit(measure(device, args.size, args.cutn, args.steps_per_frame, frames, args.precision, args.lr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
