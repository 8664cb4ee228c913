"""The serving queue on a Ray pool (``app.py --ray``), on a local Ray with two one-thread CPU
workers: jobs of two identities two at a time with previews while they run, a worker killed
mid-job (its job made once more and written once), a cancel within a step, and the web UI's
jobs relayed through the pool."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.config_schema import to_plain
from generator.serving.queue import JobQueue, ServedJob
from generator.webui.studio import Studio
from tests.factories import tiny_run_config
from tests.ray_cluster import needs_ray

pytestmark = needs_ray


class Pool:
    def __init__(self, queue: JobQueue, outputs: Path):
        self.queue, self.outputs = queue, outputs
        self.backend = queue.backend


@pytest.fixture(scope="module")
def pool(local_ray, tiny_files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    from generator.serving.ray_pool import PoolSettings, RayBackend

    folder = tmp_path_factory.mktemp("pool")
    settings = PoolSettings(outputs_dir=str(folder / "outputs"), models=to_plain(tiny_files.models()), device="cpu",
                            state_dir=str(folder / "state"))
    backend = RayBackend(None, settings, workers=2, threads=1)
    queue = JobQueue(backend=backend, max_per_owner=4)
    try:
        yield Pool(queue, folder / "outputs")
    finally:
        queue.close()


def wait(job: ServedJob, timeout: float = 180) -> ServedJob:
    ends = time.monotonic() + timeout
    while not job.ended_yet:
        assert time.monotonic() < ends, f"the job did not end: {job.status} at step {job.step}"
        job.events_after(len(job.events) - 1, 0.5)
    return job


def folders_of(outputs: Path, seed: int) -> list[Path]:
    return [p for p in outputs.iterdir() if (p / "config.json").is_file()
            and json.loads((p / "config.json").read_text())["seed"] == seed] if outputs.is_dir() else []


def test_four_jobs_of_two_identities_run_two_at_a_time_with_previews(pool: Pool, tiny_files) -> None:
    config = {seed: tiny_run_config(tiny_files, steps=24, seed=seed, output={"save_every": 4}) for seed in range(1, 5)}
    jobs = [pool.queue.submit("alice" if seed % 2 else "bob", "text-to-image", to_plain(c), make=None)
            for seed, c in config.items()]
    most = 0
    while not all(job.ended_yet for job in jobs):
        running = sum(job.status == "running" for job in jobs)
        most = max(most, running)
        assert running <= 2
        time.sleep(0.02)
    assert most == 2, "two workers never ran two jobs at once"
    for job in jobs:
        assert job.status == "done", job.message
        kinds = [kind for _, kind, _ in job.events]
        assert kinds.index("preview") < kinds.index("done") and kinds.count("preview") == 6
        assert job.preview is not None and job.final is not None and job.final.result.endswith("final.png")
    assert {job.slot for job in jobs} == {0, 1}  # both workers made jobs
    for seed in config:
        (folder,) = folders_of(pool.outputs, seed)
        assert (folder / "final.png").is_file() and json.loads((folder / "run.json").read_text())["status"] == "done"


def test_a_worker_killed_mid_job_makes_it_once_more_and_it_is_written_once(pool: Pool, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=400, seed=77, output={"save_every": 2})
    job = pool.queue.submit("alice", "text-to-image", to_plain(config), make=None)
    while job.step < 4:
        assert not job.ended_yet, job.message
        time.sleep(0.02)
    partial = job.folder
    os.kill(pool.backend.pids[job.slot], signal.SIGKILL)
    wait(job, timeout=300)
    assert job.status == "done", job.message
    assert [kind for _, kind, _ in job.events].count("retried") == 1
    (folder,) = folders_of(pool.outputs, 77)  # the killed attempt's partial folder is gone
    assert partial is None or not Path(partial).exists() or Path(partial) == folder
    assert json.loads((folder / "run.json").read_text())["step"] == 400 and job.step == job.total == 400


def test_cancel_stops_a_remote_job_within_a_step_and_keeps_its_image(pool: Pool, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=100_000, seed=88)
    job = pool.queue.submit("bob", "text-to-image", to_plain(config), make=None)
    while job.step < 3:
        assert not job.ended_yet, job.message
        time.sleep(0.02)
    asked_at = job.step
    pool.queue.cancel(job)
    wait(job)
    assert job.status == "cancelled" and job.step <= asked_at + 3
    (folder,) = folders_of(pool.outputs, 88)
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "stopped" and job.result == str(folder / "final.png")


def test_the_web_ui_jobs_go_through_the_pool_with_previews_and_stop(pool: Pool, tiny_files, tmp_path: Path) -> None:
    from generator.serving.relay import QueueRelay
    from generator.webui.jobs import text_to_image_job

    studio = Studio(outputs_dir=pool.outputs, device="cpu", state_dir=tmp_path / "state")
    studio.pool = QueueRelay(pool.queue)
    session = studio.session()
    updates = list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=8, seed=61,
                                                             output={"save_every": 2}), session))
    assert sum(u.preview is not None for u in updates) == 4
    assert [u.progress[0] for u in updates if u.progress][-1] == 8
    final = updates[-1]
    assert final.result.endswith("final.png") and final.status.startswith("done in") and final.seed == 61
    assert session.record.status == "done" and session.record.result == Path(final.result)
    assert studio.text_to_image is None  # nothing was loaded in the web server itself
    # Stop: the page closes the job; the remote job is cancelled and keeps its image
    job = text_to_image_job(studio, tiny_run_config(tiny_files, steps=100_000, seed=62), session)
    for update in job:
        if update.progress and update.progress[0] >= 3:
            break
    job.close()
    assert session.finished.is_set() and session.record.status == "stopped"
    assert session.record.result is not None and session.record.result.name == "final.png"
    assert session.record.result.is_file()


def test_a_page_waiting_for_a_worker_is_told_its_place_in_the_queue(pool: Pool, tiny_files, tmp_path: Path) -> None:
    from generator.serving.relay import QueueRelay
    from generator.webui.jobs import text_to_image_job

    busy = [pool.queue.submit(f"api:{n}", "text-to-image", to_plain(tiny_run_config(tiny_files, steps=100_000)),
                              make=None) for n in range(2)]
    try:
        while not all(job.status == "running" for job in busy):
            time.sleep(0.02)
        studio = Studio(outputs_dir=pool.outputs, device="cpu", state_dir=tmp_path / "state")
        studio.pool = QueueRelay(pool.queue)
        job = text_to_image_job(studio, tiny_run_config(tiny_files, steps=2), studio.session())
        first = next(job)
        assert first.status.startswith("waiting in the queue: yours is next"), first.status
        for job_ in busy:
            pool.queue.cancel(job_)
        rest = list(job)
        assert rest[-1].result is not None and rest[-1].result.endswith("final.png")
    finally:
        for job_ in busy:
            pool.queue.cancel(job_)
            wait(job_)
