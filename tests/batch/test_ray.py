"""Ray: jobs spread over two one-thread workers of a local Ray, results written by the driver,
a killed worker's job made again and written once, and a clear sentence without Ray."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

from generator.batch.driver import run_batch
from generator.batch.jobs import parse_jobs
from generator.cli.main import main
from generator.config import GenerationConfig
from tests.batch.helpers import FAST, batch_args, lines, pixels, run_folders
from tests.factories import tiny_run_config
from tests.ray_cluster import needs_ray


@needs_ray
def test_two_workers_finish_six_jobs_when_one_is_killed_mid_run(local_ray, tiny_files, tmp_path: Path) -> None:
    from generator.batch.ray_runner import RayExecutor

    defaults = tiny_run_config(tiny_files, steps=20, size=[48, 48]).to_dict()
    jobs = parse_jobs([{"prompt": f"prompt {n}", "seed": n} for n in range(6)], defaults)
    killed: list[int] = []

    def kill_the_third(pid: int, job_ids: list[str]) -> None:
        submitted.append(job_ids)
        if len(submitted) == 3:  # right after the first result: that worker has just been given a job
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    submitted: list[list[str]] = []
    executor = RayExecutor(make_pipeline=None, device="cpu", workers=2, threads=1, on_submit=kill_the_third)
    assert len(executor.actors) == 2 and len(set(executor.pids.values())) == 2
    summary = run_batch(jobs, tmp_path, executor)
    assert killed and summary.done == 6 and summary.failed == 0
    records = lines(tmp_path)
    assert sorted(r["id"] for r in records) == sorted(job.id for job in jobs)  # each job written once
    assert all(r["status"] == "done" and r["device"] == "cpu" for r in records)
    assert len(run_folders(tmp_path)) == 6 and sorted(r["folder"] for r in records) == \
        [f.name for f in run_folders(tmp_path)]
    retried = [r for r in records if r["attempts"] == 2]
    assert len(retried) == 1 and retried[0]["id"] in submitted[2]  # the killed worker's job, made again
    assert sum(len(ids) for ids in submitted) == 7
    assert len({r["worker"] for r in records}) >= 2  # both workers made jobs


@needs_ray
def test_the_cli_spreads_jobs_over_ray_and_writes_what_a_single_run_writes(local_ray, tiny_files, tiny_pipeline,
                                                                           tmp_path: Path) -> None:
    jobs = tmp_path / "prompts.txt"
    jobs.write_text("a red cat\nsea at dawn\ncity at night\n")
    out = tmp_path / "batch"
    args = batch_args(tiny_files, jobs, out, "--seed", "4", "--ray", "--workers", "2", "--worker-threads", "1",
                      "--device", "cpu")
    assert main(args) == 0
    records = lines(out)
    assert [r["status"] for r in records] == ["done"] * 3 and len(run_folders(out)) == 3
    for record in records:
        folder = out / record["folder"]
        assert {"final.png", "config.json", "run.json"} <= {p.name for p in folder.iterdir()}
        single = tmp_path / f"single-{record['id']}"  # a run made here writes the same files
        assert main([record["prompt"], "--seed", str(record["seed"]), *tiny_files.cli_args(), *FAST,
                     "--out", str(single)], make_pipeline=lambda *a, **k: tiny_pipeline) == 0
        (single_folder,) = run_folders(single)
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in single_folder.iterdir())
        alone = tiny_pipeline(GenerationConfig.from_dict(record["config"])).images[0]
        assert np.array_equal(pixels(folder / "final.png"), np.asarray(alone.convert("RGB")).astype(np.int16))
        assert record["worker"].rsplit(":", 1)[1] != str(os.getpid())  # made in a worker process


def test_ray_without_ray_installed_is_one_sentence(tiny_files, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    jobs = tmp_path / "prompts.txt"
    jobs.write_text("a red cat\n")
    assert main(batch_args(tiny_files, jobs, tmp_path / "b", "--ray")) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --ray needs Ray, which is not installed; install it with `pip install .[ray]` "
        "(or `pip install -r requirements-ray.txt`).")
