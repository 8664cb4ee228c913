"""Images per hour of ``python -m generator batch``: 1 vs 2 Ray workers, and batch sizes 1/2/4.

The official model shapes (VQGAN f16-16384, CLIP ViT-B/32) with random weights: speed does
not depend on the values. Models are loaded and warmed up (one short job per worker) before
the clock starts; the clock covers making the jobs and writing their run folders, as the
batch command does. Prints one JSON line per measurement. Usage:

    python bench/batch.py                              # Ray 1 vs 2 workers (1 thread each), batch 1/2/4
    python bench/batch.py --only ray --workers 1 2 1 2  # alternated, since a busy machine drifts
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import commit, emit, machine
from generator.batch.driver import LocalExecutor, write_result
from generator.batch.jobs import Job, parse_jobs
from generator.batch.work import Worker, group_jobs
from generator.config import ClipModelConfig, ModelsConfig
from generator.devices import pick_device
from generator.text_to_image.loader import load_clip
from generator.text_to_image.pipeline import TextToImage
from models.vqgan import VQGAN, VQGANConfig

MODELS = ModelsConfig(vqgan="random f16-16384", clip_models=(ClipModelConfig("ViT-B-32", None),))


def official_random_pipeline(models: ModelsConfig, device: str = "auto", **_: object) -> TextToImage:
    """The official shapes with random weights (module level, so Ray workers can import it)."""
    where = pick_device(device)
    vqgan = VQGAN(VQGANConfig()).eval().requires_grad_(False).to(where)
    clip = load_clip("ViT-B-32", None, device=where, quick_gelu=True)
    return TextToImage(vqgan, [clip], models=MODELS, device=where)


def _jobs(count: int, size: int, steps: int, cutn: int, first: int = 0) -> list[Job]:
    defaults = {"size": [size, size], "steps": steps, "cutouts": {"cutn": cutn}, "models": {
        "vqgan": MODELS.vqgan, "clip_models": [{"model": "ViT-B-32", "pretrained": None}]}}
    return parse_jobs([{"prompt": f"a city at night, view {n}", "seed": n} for n in range(first, first + count)],
                      defaults, name="bench")


def _timed(executor, groups: list[list[Job]], out: Path) -> float:
    started = time.perf_counter()
    for result in executor.results(groups):
        record = write_result(result, out)
        if record.status != "done":
            raise SystemExit(f"a bench job failed: {record.error}")
    return time.perf_counter() - started


def _row(kind: str, device: torch.device, images: int, seconds: float, **settings: object) -> dict:
    return {"bench": "batch", "kind": kind, "commit": commit(), **machine(device), **settings, "images": images,
            "seconds": round(seconds, 1), "seconds_per_image": round(seconds / images, 2),
            "images_per_hour": round(images * 3600 / seconds, 1)}


def bench_ray(args: argparse.Namespace, device: torch.device, out: Path) -> None:
    import ray

    from bench.batch import official_random_pipeline as importable_factory  # by name, not pickled from __main__
    from generator.batch.ray_runner import RayExecutor

    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    ray.init(num_cpus=max(args.workers), num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    try:
        rows: dict[int, dict] = {}  # the latest row of each worker count
        for workers in args.workers:
            executor = RayExecutor(make_pipeline=importable_factory, device=args.device, workers=workers, threads=1)
            try:
                count = len(executor.actors)
                warm = _jobs(count, args.size, 1, args.cutn, first=1000)
                _timed(executor, [[job] for job in warm], out)  # one short job on each worker
                jobs = _jobs(args.jobs_per_worker * count, args.size, args.steps, args.cutn)
                seconds = _timed(executor, group_jobs(jobs, 1), out)
            finally:
                executor.close()
            row = _row("ray", device, len(jobs), seconds, workers=count, threads_per_worker=executor.threads,
                       size=args.size, steps=args.steps, cutn=args.cutn)
            baseline = rows.get(args.workers[0])  # the latest measurement of the first worker count
            if baseline is not None and workers != args.workers[0]:
                row["speedup_vs_first"] = round(row["images_per_hour"] / baseline["images_per_hour"], 2)
            rows[workers] = row
            emit(row)
    finally:
        ray.shutdown()


def bench_batch_sizes(args: argparse.Namespace, device: torch.device, out: Path) -> None:
    executor = LocalExecutor(Worker(official_random_pipeline, device=args.device))
    _timed(executor, [_jobs(1, args.size, 1, args.cutn, first=1000)], out)  # load and warm up
    first = None
    for batch_size in args.batch_sizes:
        jobs = _jobs(args.images, args.size, args.steps, args.cutn)
        seconds = _timed(executor, group_jobs(jobs, batch_size), out)
        row = _row("batch_size", device, len(jobs), seconds, batch_size=batch_size, size=args.size,
                   steps=args.steps, cutn=args.cutn)
        first = first or row
        row["speedup_vs_first"] = round(row["images_per_hour"] / first["images_per_hour"], 2)
        emit(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None, help="steps per image (default: 50 on a GPU, 3 on the CPU)")
    parser.add_argument("--cutn", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="Ray worker counts to measure, in order (repeat them to alternate: 1 2 1 2)")
    parser.add_argument("--jobs-per-worker", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--images", type=int, default=4, help="images per batch-size measurement")
    parser.add_argument("--only", choices=("ray", "batch"), default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    args.steps = args.steps or (50 if device.type == "cuda" else 3)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as folder:
        if args.only in (None, "ray"):
            bench_ray(args, device, Path(folder))
        if args.only in (None, "batch"):
            bench_batch_sizes(args, device, Path(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
