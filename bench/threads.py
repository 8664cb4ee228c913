"""Seconds per optimisation step of a small text-to-image run with torch's default CPU thread
count and with the one :func:`generator.devices.choose_threads` picks, while other processes
load the CPU.

A busy loop per usable core (``--busy``, default: as many as the cores this process may use)
runs beside the benchmark, as another user's work would; the choice is made once the
one-minute load average shows it (at most ``--settle`` seconds), as a command started then
would make it. The two settings alternate over ``--repeats`` on the tiny random test models
(nothing is downloaded), after a warm-up run; the busy loops are stopped at the end. Prints
one JSON line per run and a summary line.

    python bench/threads.py --repeats 3
    python bench/threads.py --busy 0          # an idle machine
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import commit, emit, machine
from generator.devices import choose_threads, usable_cores
from generator.events import Progress
from generator.text_to_image.pipeline import TextToImage


def seconds_per_step(pipeline: TextToImage, config) -> float:
    """Median seconds between consecutive optimisation steps of one run."""
    stamps = [time.perf_counter() for event in pipeline.run(config) if isinstance(event, Progress)]
    return statistics.median(b - a for a, b in zip(stamps, stamps[1:], strict=False))


def busy_loops(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep one core busy."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=96, help="run size in pixels (square)")
    parser.add_argument("--cutn", type=int, default=16)
    parser.add_argument("--busy", type=int, default=None, help="busy-loop processes (default: one per usable core)")
    parser.add_argument("--settle", type=float, default=75.0,
                        help="seconds to wait at most for the load average to show the busy loops")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()  # before anything here sets it
    busy = usable_cores() if args.busy is None else args.busy
    from tests.factories import tiny_run_config, write_tiny_models

    loops = busy_loops(busy)
    try:
        with tempfile.TemporaryDirectory(prefix="threads-") as work_dir:
            files = write_tiny_models(Path(work_dir) / "models")
            pipeline = TextToImage.from_pretrained(files.models(), device="cpu")
            config = tiny_run_config(files, size=[args.size, args.size], steps=args.steps,
                                     cutouts={"cutn": args.cutn})
            seconds_per_step(pipeline, tiny_run_config(files, steps=3))  # warm-up: lazy loads, caches
            start = time.monotonic()
            while busy and os.getloadavg()[0] < 0.6 * busy and time.monotonic() - start < args.settle:
                time.sleep(1)
            chosen, load = choose_threads(None), os.getloadavg()[0]
            results: dict[str, list[float]] = {"default": [], "chosen": []}
            for repeat in range(args.repeats):
                for name, threads in (("default", default_threads), ("chosen", chosen)):
                    torch.set_num_threads(threads)
                    seconds = seconds_per_step(pipeline, config)
                    results[name].append(seconds)
                    emit({"bench": "threads", "commit": commit(), **machine(pipeline.device),
                          "usable_cores": usable_cores(), "busy_processes": busy, "load_1min": round(load, 2),
                          "setting": name, "threads": threads, "repeat": repeat, "size": args.size,
                          "cutn": args.cutn, "steps": args.steps, "seconds_per_step": round(seconds, 4)})
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    default, best = (statistics.median(results[name]) for name in ("default", "chosen"))
    emit({"bench": "threads-summary", "default_threads": default_threads, "chosen_threads": chosen,
          "load_when_chosen": round(load, 2), "seconds_per_step_default": round(default, 4),
          "seconds_per_step_chosen": round(best, 4), "speedup": round(default / best, 2)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
