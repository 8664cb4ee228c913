"""Ray on a GPU machine: one worker per GPU, each making its jobs on its own GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generator.batch.driver import run_batch
from generator.batch.jobs import parse_jobs
from tests.batch.helpers import lines
from tests.factories import tiny_run_config

pytestmark = pytest.mark.gpu


def test_one_worker_per_gpu_makes_the_jobs_on_the_gpu(tiny_files, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from generator.batch.ray_runner import RayExecutor

    gpus = torch.cuda.device_count()
    ray.init(num_cpus=2, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor(device="auto")
        assert len(executor.actors) == gpus and executor.threads is None
        jobs = parse_jobs([{"prompt": f"prompt {n}", "seed": n} for n in range(2 * gpus)],
                          tiny_run_config(tiny_files, steps=3).to_dict())
        summary = run_batch(jobs, tmp_path, executor)
    finally:
        ray.shutdown()
    assert summary.done == 2 * gpus
    records = lines(tmp_path)
    assert len({r["worker"] for r in records}) == gpus
    assert all(r["status"] == "done" and r["device"].startswith("cuda") for r in records)
