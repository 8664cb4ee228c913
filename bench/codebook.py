"""Dead-code restarts: how much of the codebook a VQGAN trained from scratch uses, and how close
its reconstructions come, with restarts and without, after the same steps.

Both runs train the studio model's VQGAN (``generator.train.studio``: factor 4, 512 codes) on the
studio's drawn images (96 per class, seed 0), 32-pixel crops, batches of 8, L1 only, one CPU
thread, the same seed; one with ``--restart-dead-codes 0`` (Taming's training), one with
restarts every ``--every`` steps. Then each encodes images drawn from a seed the training never
used, at their full 96 x 96: the distinct codes used, and the PSNR of the reconstructions::

    python bench/codebook.py --steps 1500

One JSON line per run (the two alternated over ``--repeats``, each in its own process), then a
summary line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import commit, emit, last_record, machine

HELD_OUT_SEED = 12345


def measure_one(args: argparse.Namespace) -> None:
    """Train one run (``--every`` 0 or not) and print its figures as one JSON line."""
    from dataclasses import replace

    from generator.io.images import pil_to_tensor
    from generator.train.studio import StudioRecipe, draw_landscape, draw_pattern, studio_vqgan_settings, write_images
    from generator.train.vqgan_train import VQGANTraining

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        recipe = StudioRecipe(vqgan_steps=args.steps)
        images = write_images(folder / "images", recipe.per_class, recipe.seed)
        settings = replace(studio_vqgan_settings(recipe, images, folder / "runs", device="cpu",
                                                 weights_dir=str(folder / "weights")),
                           restart_dead_codes=args.one_every, disc_start=10**9, sample_every=10**9)
        started = time.perf_counter()
        vqgan = VQGANTraining.start(settings).run().vqgan.eval()
        seconds = time.perf_counter() - started
    rng = random.Random(HELD_OUT_SEED)
    scores, used = [], set()
    with torch.no_grad():
        for draw in (draw_landscape, draw_pattern) * args.held_out:
            x = pil_to_tensor(draw(rng)) * 2 - 1  # (1, 3, 96, 96)
            quantized = vqgan.quantize(vqgan.encode(x))
            used.update(quantized.indices.flatten().tolist())
            mse = ((vqgan.decode(quantized.z_q).clamp(-1, 1) - x) / 2).pow(2).mean()
            scores.append(float(10 * torch.log10(1 / mse)))
    print(json.dumps({"every": args.one_every, "threads": 1, "seconds": round(seconds, 1), "codes_used": len(used),
                      "codes": vqgan.n_codes, "psnr_landscape": round(statistics.mean(scores[0::2]), 2),
                      "psnr_pattern": round(statistics.mean(scores[1::2]), 2)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each run (default 1500)")
    parser.add_argument("--every", type=int, default=100, help="steps between restarts (default 100)")
    parser.add_argument("--held-out", type=int, default=8, help="unseen images of each class (default 8)")
    parser.add_argument("--repeats", type=int, default=1, help="alternated repeats (default 1)")
    parser.add_argument("--one-every", type=int, default=None, help=argparse.SUPPRESS)  # one measurement
    args = parser.parse_args(argv)
    if args.one_every is not None:
        measure_one(args)
        return 0
    base = {"bench": "codebook", "commit": commit(), "machine": machine(torch.device("cpu")), "steps": args.steps}
    found: dict[int, list[dict]] = {0: [], args.every: []}
    for repeat in range(args.repeats):
        for every in found:
            command = [sys.executable, __file__, "--steps", str(args.steps), "--held-out", str(args.held_out),
                       "--one-every", str(every)]
            record = last_record(command)
            found[every].append(record)
            emit({**base, **record, "repeat": repeat})
    summary = {f"every_{every}": {key: statistics.median(r[key] for r in records)
                                  for key in ("codes_used", "psnr_landscape", "psnr_pattern")}
               for every, records in found.items()}
    emit({**base, "summary": True, **summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
