"""The serving queue: jobs per hour with 1 and 2 Ray workers, and the latency the Ray path adds
to one job against the same job made in the web server's process.

Both measure what ``app.py`` runs: a :class:`~generator.serving.queue.JobQueue` whose backend is
the in-process one (``python app.py``) or a :class:`~generator.serving.ray_pool.RayBackend`
(``python app.py --ray``) on a local Ray with one CPU thread per worker, making the text-to-
image job of the tiny random test models (what CI machines have; 64x64, 4 cutouts, ``--steps``
steps, fp32). Workers are warmed up (one short job each) before any clock starts.

* throughput: ``--jobs`` jobs submitted at once; jobs per hour = jobs / seconds until the last
  ended. Run for 1 and 2 workers, alternated over ``--repeats``.
* latency: one job, submit to its end, in-process and on a warm one-worker pool, alternated
  over ``--repeats``; the Ray path's extra is the difference of the medians.

Prints one JSON line per measurement and a summary line::

    python bench/serve.py                          # 8 jobs of 20 steps, 2 repeats
    python bench/serve.py --jobs 12 --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import commit, emit, machine
from generator.config_schema import to_plain
from generator.serving.queue import JobQueue, ServedJob
from generator.text_to_image.pipeline import TextToImage
from generator.webui.jobs import text_to_image_job
from generator.webui.studio import Studio


def wait_all(jobs: list[ServedJob]) -> None:
    for job in jobs:
        while not job.ended_yet:
            job.events_after(len(job.events) - 1, 0.5)
        if job.status != "done":
            raise SystemExit(f"a job failed: {job.message}")


def submit(queue: JobQueue, studio: Studio | None, config, owner: str = "bench") -> ServedJob:
    def make(session):
        return text_to_image_job(studio, config, session)
    return queue.submit(owner, "text-to-image", to_plain(config), make)


def pool_queue(settings, workers: int) -> JobQueue:
    from generator.serving.ray_pool import RayBackend

    queue = JobQueue(backend=RayBackend(None, settings, workers=workers, threads=1), max_queue=256, max_per_owner=256)
    queue.backend.warm()
    return queue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs submitted at once for jobs per hour (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="steps per job (default 20)")
    parser.add_argument("--repeats", type=int, default=2, help="alternated repeats (default 2)")
    args = parser.parse_args(argv)

    import ray

    from generator.serving.ray_pool import PoolSettings
    from tests.factories import tiny_run_config, write_tiny_models

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        files = write_tiny_models(work / "models")
        config = tiny_run_config(files, size=[64, 64], steps=args.steps)
        warm = tiny_run_config(files, size=[64, 64], steps=2)
        settings = PoolSettings(outputs_dir=str(work / "outputs"), models=to_plain(files.models()), device="cpu",
                                state_dir=str(work / "state"))
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
        try:
            base = {"bench": "serve", "commit": commit(), "machine": machine(torch.device("cpu")),
                    "steps": args.steps, "size": 64}
            per_hour: dict[int, list[float]] = {1: [], 2: []}
            for repeat in range(args.repeats):
                for workers in (1, 2):
                    queue = pool_queue(settings, workers)
                    try:
                        wait_all([submit(queue, None, warm, f"w{k}") for k in range(workers)])
                        started = time.perf_counter()
                        jobs = [submit(queue, None, config.replace(seed=k), f"user{k % 2}") for k in range(args.jobs)]
                        wait_all(jobs)
                        seconds = time.perf_counter() - started
                    finally:
                        queue.close()
                    per_hour[workers].append(3600 * args.jobs / seconds)
                    emit({**base, "measure": "jobs_per_hour", "workers": workers, "repeat": repeat,
                          "jobs": args.jobs, "seconds": round(seconds, 2),
                          "jobs_per_hour": round(per_hour[workers][-1], 1)})
            latency: dict[str, list[float]] = {"in-process": [], "ray": []}
            pipeline = TextToImage.from_pretrained(files.models(), device="cpu")
            studio = Studio(outputs_dir=work / "outputs", text_to_image=pipeline, state_dir=work / "state")
            local = JobQueue(studio.gpu)
            pool = pool_queue(settings, 1)
            try:
                wait_all([submit(local, studio, warm), submit(pool, None, warm)])
                for repeat in range(args.repeats):
                    for path, queue, owner in (("in-process", local, studio), ("ray", pool, None)):
                        started = time.perf_counter()
                        wait_all([submit(queue, owner, config.replace(seed=repeat))])
                        latency[path].append(time.perf_counter() - started)
                        emit({**base, "measure": "one_job_seconds", "path": path, "repeat": repeat,
                              "seconds": round(latency[path][-1], 3)})
            finally:
                local.close()
                pool.close()
        finally:
            ray.shutdown()
    one, two = (statistics.median(per_hour[w]) for w in (1, 2))
    inside, remote = (statistics.median(latency[p]) for p in ("in-process", "ray"))
    emit({**base, "summary": True, "jobs_per_hour_1_worker": round(one, 1), "jobs_per_hour_2_workers": round(two, 1),
          "speedup_2_workers": round(two / one, 2), "one_job_in_process_s": round(inside, 3),
          "one_job_ray_s": round(remote, 3), "ray_added_s": round(remote - inside, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
