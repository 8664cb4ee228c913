"""Megapixels per second and peak memory of the ESRGAN stage.

RealESRGAN_x4plus shapes (RRDBNet, 23 blocks, random weights: speed does not depend on the
values) and realesr-general-x4v3 (the real weights from ../shared/weights when present, else
random weights of the same shape), at 256, 512 and 1024 px inputs with tiles 0 (whole image,
or the largest tiles that fit in memory), 256 and 512. Every measurement runs in its own
process, upscales the image once to warm up (kernels for every tile shape, allocator), then
times a second pass, and prints one JSON line with the commit measured and the precision and
tiles actually used. Usage:

    python bench/upscale.py                                   # auto device, everything
    python bench/upscale.py --quick                           # < 2 minutes on a 2-core CPU
    python bench/upscale.py --device cpu --models general-x4v3 --sizes 256 512 --precisions auto fp32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from spandrel import ModelLoader
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN

from bench.common import commit, emit, machine, peak_mb, reset_peak, run_isolated
from generator.devices import pick_device
from generator.events import Notice
from generator.upscale.loader import Upscaler, load_upscaler
from generator.upscale.tiles import plan_tiles, upscale_pixels

SHARED_GENERAL = Path(__file__).resolve().parents[2] / "shared" / "weights" / "realesr-general-x4v3.fp16.pth"
MODELS = ("x4plus", "general-x4v3")
QUICK = {"models": ["general-x4v3"], "sizes": [256, 512], "tiles": [0, 256], "precisions": ["auto"]}


def build(name: str, device: torch.device) -> tuple[Upscaler, str]:
    if name == "general-x4v3" and SHARED_GENERAL.is_file():
        return load_upscaler(str(SHARED_GENERAL), device=device), "real weights"
    torch.manual_seed(0)
    module = ESRGAN(num_filters=64, num_blocks=23, scale=4) if name == "x4plus" else \
        Compact(num_feat=64, num_conv=32, upscale=4)
    descriptor = ModelLoader().load_from_state_dict(module.state_dict()).to(device).eval()
    descriptor.model.requires_grad_(False)
    return Upscaler(descriptor, name), "random weights"


def measure(name: str, size: int, tile: int, precision: str, device: torch.device) -> dict:
    upscaler, weights = build(name, device)
    pixels = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    for _ in upscale_pixels(upscaler, pixels, tile=tile, precision=precision):  # warm-up: the same path
        pass
    plan = plan_tiles(upscaler, size, size, tile=tile, precision=precision)
    reset_peak(device)
    started = time.perf_counter()
    events = list(upscale_pixels(upscaler, pixels, tile=tile, precision=precision))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    output_mp = (size * upscaler.scale) ** 2 / 1e6
    return {"bench": "upscale", "commit": commit(), **machine(device), "model": name, "weights": weights,
            "input": size, "tile": tile, "tile_used": plan.tile, "tile_pad": plan.pad, "tiles": plan.tiles,
            "precision": precision, "precision_used": plan.precision,
            "notices": [event.message for event in events if isinstance(event, Notice)],
            "seconds": round(seconds, 3), "input_megapixels_per_second": round(size * size / 1e6 / seconds, 4),
            "output_megapixels_per_second": round(output_mp / seconds, 3), "peak_memory_mb": round(peak_mb(device), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--tiles", type=int, nargs="+", default=[0, 256, 512])
    parser.add_argument("--precisions", nargs="+", choices=("auto", "fp32", "bf16", "fp16"), default=["auto"])
    parser.add_argument("--quick", action="store_true",
                        help="general-x4v3 at 256 and 512 px, tiles 0 and 256 (under 2 minutes on a 2-core CPU)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    device = pick_device(args.device)
    if args.one:
        emit(measure(args.models[0], args.sizes[0], args.tiles[0], args.precisions[0], device))
        return 0
    status = 0
    for name in args.models:
        for size in args.sizes:
            for tile in args.tiles:
                for precision in args.precisions:
                    status |= run_isolated(__file__, ["--one", "--device", str(device), "--models", name,
                                                      "--sizes", str(size), "--tiles", str(tile),
                                                      "--precisions", precision])
    return status


if __name__ == "__main__":
    sys.exit(main())
