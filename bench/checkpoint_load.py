"""First and later load times of checkpoints, for this checkout and others, alternated.

Files: the two real Real-ESRGAN files in ../shared/weights (when present) and a VQGAN
checkpoint of the official f16-16384 shapes with random weights, written like Taming's
``last.ckpt`` (state dict with the discriminator and LPIPS entries, Adam state of both
optimizers: about 1 GB). Each measurement is a fresh process (warm page cache) that times the
project's own loader (``load_upscaler`` / ``load_vqgan``, after collecting the garbage of the
imports, which would otherwise land a 0.1 s collection in whichever code runs first) and then
one forward pass (an
upscale of 64x64 pixels, a decode of a 16x16 latent), which is where a memory-mapped load
pays for the pages it deferred. "first" uses an empty weights folder (this project then parses
the pickle in its limited child and writes the safe copy); "later" reuses the folder of the
first. Checkouts are given as LABEL=PATH and measured in turn, round after round.

    python bench/checkpoint_load.py --checkout new=. --checkout old=/tmp/old-checkout --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "weights"
UPSCALERS = ("realesr-animevideov3.pth", "realesr-general-x4v3.fp16.pth")
OFFICIAL_F16_16384 = dict(embed_dim=256, n_embed=16384, z_channels=256, resolution=256, in_channels=3, out_ch=3,
                          ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,))

# Runs inside the measured checkout (its own generator package), prints one JSON object.
_MEASURE = """
import gc, json, sys, time
import torch
kind, path, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
torch.set_num_threads(2)
from generator.upscale.loader import load_upscaler
from generator.decoder.loader import load_vqgan
from models.vqgan import VQGANConfig
gc.collect()  # the garbage of importing torch is collected here, not charged to whichever load comes first
started = time.perf_counter()
if kind == "upscaler":
    model = load_upscaler(path)
    loaded = time.perf_counter()
    with torch.no_grad():
        model.descriptor.model(torch.rand(1, 3, 64, 64).to(memory_format=torch.channels_last))
else:
    model = load_vqgan(path, VQGANConfig(**config))
    loaded = time.perf_counter()
    with torch.no_grad():
        model.decode_indices(torch.zeros(1, 16, 16, dtype=torch.long))
done = time.perf_counter()
print(json.dumps({"load_s": loaded - started, "load_and_forward_s": done - started}))
"""


def official_vqgan_checkpoint(folder: Path) -> Path:
    """The ~1 GB Lightning-style checkpoint of official f16-16384 shapes (written once)."""
    path = folder / "vqgan_f16_16384_random.ckpt"
    if path.is_file():
        return path
    sys.path.insert(0, str(ROOT))
    import torch

    from models.vqgan import VQGAN, VQGANConfig

    torch.manual_seed(0)
    with torch.device("cpu"):
        model = VQGAN(VQGANConfig(**OFFICIAL_F16_16384))
    state = {key: value.clone() for key, value in model.state_dict().items()}
    discriminator = {f"loss.discriminator.main.{i}.weight": torch.randn(64 * 2**min(i, 3), 3 if i == 0 else 64, 4, 4)
                     for i in range(5)}
    perceptual = {f"loss.perceptual_loss.net.slice{i}.weight": torch.randn(512, 512, 3, 3) for i in range(6)}
    state.update(discriminator | perceptual)
    adam = {index: {"exp_avg": torch.randn_like(tensor), "exp_avg_sq": torch.rand_like(tensor),
                    "step": torch.tensor(1.0)} for index, tensor in enumerate(model.parameters())}
    torch.save({"epoch": 1, "global_step": 1000, "state_dict": state,
                "optimizer_states": [{"state": adam, "param_groups": [{"lr": 4.5e-6, "params": list(adam)}]}],
                "lr_schedulers": []}, path)
    return path


def measure(checkout: Path, kind: str, path: Path, weights: Path) -> dict:
    config = json.dumps(OFFICIAL_F16_16384 if kind == "vqgan" else {})
    env = {**os.environ, "PYTHONPATH": str(checkout), "GENERATOR_WEIGHTS_DIR": str(weights),
           "GENERATOR_OFFLINE": "1"}
    env.pop("GENERATOR_SAFE_COPIES_DIR", None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _MEASURE, kind, str(path), config], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{checkout}: {result.stderr[-2000:]}")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    record["process_s"] = time.perf_counter() - started
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", default=[], metavar="LABEL=PATH",
                        help="a checkout to measure (default: new=this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--later", type=int, default=3, help="later loads per round")
    parser.add_argument("--files", default=str(Path(tempfile.gettempdir()) / "vqgan-studio-bench-files"),
                        help="where the 1 GB VQGAN checkpoint is written (and kept for later runs)")
    parser.add_argument("--skip-vqgan", action="store_true")
    args = parser.parse_args()
    checkouts = dict(item.split("=", 1) for item in (args.checkout or [f"new={ROOT}"]))
    files = Path(args.files)
    files.mkdir(parents=True, exist_ok=True)
    cases = [("upscaler", SHARED / name) for name in UPSCALERS if (SHARED / name).is_file()]
    if not args.skip_vqgan:
        cases.append(("vqgan", official_vqgan_checkpoint(files)))
    for round_ in range(1, args.rounds + 1):
        for kind, path in cases:
            for label, checkout in checkouts.items():
                weights = Path(tempfile.mkdtemp(prefix="bench-weights-"))
                try:
                    first = measure(Path(checkout), kind, path, weights)
                    later = [measure(Path(checkout), kind, path, weights) for _ in range(args.later)]
                finally:
                    shutil.rmtree(weights, ignore_errors=True)
                best = min(later, key=lambda r: r["load_and_forward_s"])
                print(json.dumps({"bench": "checkpoint_load", "round": round_, "checkout": label, "file": path.name,
                                  "mb": round(path.stat().st_size / 1e6, 1),
                                  "first_load_s": round(first["load_s"], 3),
                                  "first_load_forward_s": round(first["load_and_forward_s"], 3),
                                  "later_load_s": round(best["load_s"], 3),
                                  "later_load_forward_s": round(best["load_and_forward_s"], 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
