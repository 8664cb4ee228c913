"""How far a reduced-precision text-to-image run is from the float32 one, at the official shapes.

VQGAN f16-16384 and CLIP ViT-B/32 with random weights (seeded), one prompt, one seed. For the
first step it prints the loss of both, the cosine between their latent updates and the
difference of the decoded start images; then it runs ``--steps`` steps both ways and prints
the two loss curves' largest relative gap and the final images' mean absolute difference
(in 1/255), beside how far the float32 image moved from its start in those steps. The
tolerance the project states (README, ``precision``) is what this measures:

    python bench/precision.py --device cpu --size 256 --steps 10        # bf16 vs float32 on the CPU
    python bench/precision.py --precision fp16                          # on a GPU
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.common import commit, emit, machine
from generator.config import ClipModelConfig, GenerationConfig, ModelsConfig
from generator.devices import pick_device, precision_for
from generator.text_to_image.clip import ClipModel
from generator.text_to_image.loader import load_clip
from generator.text_to_image.pipeline import TextToImage
from models.vqgan import VQGAN, VQGANConfig

MODELS = ModelsConfig(vqgan="random f16-16384", clip_models=(ClipModelConfig("ViT-B-32", None),))


def trajectory(vqgan: VQGAN, clip: ClipModel, device: torch.device, precision: str, size: int,
               steps: int) -> dict:
    """Loss per step, the first update, the start image and the final image of one run."""
    pipeline = TextToImage(vqgan, [clip], models=MODELS, device=device)
    config = GenerationConfig(prompts="city at night", size=(size, size), steps=steps, seed=3, precision=precision,
                              models=MODELS).with_seed()
    loop = pipeline.new_loop(config)
    start = pipeline.start_image(loop, config, (size, size))
    for _ in start:
        pass
    first = loop.latents()
    start_image = np.asarray(loop.decode()[0], dtype=np.float64)
    losses, update = [], None
    for _ in range(steps):
        report = loop.step()
        loop.check(report)
        losses.append(report.values()[0])
        if update is None:
            update = (loop.latents() - first).flatten().float()
    return {"losses": losses, "update": update, "start": start_image,
            "final": np.asarray(loop.decode()[0], dtype=np.float64)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--precision", default="auto", help="the precision compared with fp32")
    args = parser.parse_args()
    device = pick_device(args.device)
    chosen = precision_for(device, args.precision)
    torch.manual_seed(0)
    vqgan = VQGAN(VQGANConfig()).eval().requires_grad_(False).to(device)
    clip = load_clip("ViT-B-32", None, device=device, quick_gelu=True)
    reduced_clip = copy.deepcopy(clip)  # its weights may be rounded; the float32 run keeps the original
    full = trajectory(vqgan, clip, device, "fp32", args.size, args.steps)
    reduced = trajectory(vqgan, reduced_clip, device, args.precision, args.size, args.steps)
    gaps = [abs(a - b) / abs(a) for a, b in zip(full["losses"], reduced["losses"], strict=True)]
    emit({"bench": "precision", "commit": commit(), **machine(device), "size": args.size, "steps": args.steps,
          "precision": args.precision, "decoder": str(chosen.decoder), "clip": str(chosen.clip or chosen.clip_weights),
          "first_loss_fp32": round(full["losses"][0], 5), "first_loss_reduced": round(reduced["losses"][0], 5),
          "first_update_cosine": round(float(torch.nn.functional.cosine_similarity(
              full["update"], reduced["update"], dim=0)), 4),
          "start_image_mean_abs_diff_255": round(float(np.abs(full["start"] - reduced["start"]).mean()), 3),
          "largest_loss_gap": round(max(gaps), 5),
          "final_image_mean_abs_diff_255": round(float(np.abs(full["final"] - reduced["final"]).mean()), 3),
          "fp32_image_change_255": round(float(np.abs(full["final"] - full["start"]).mean()), 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
