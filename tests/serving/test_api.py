"""The HTTP API against a running server (real HTTP, the web UI's server with the API mounted):
every mode submitted, streamed and downloaded on tiny models; cancel within a step; identities
that never see each other's jobs; refusals as 4xx sentences; the OpenAPI document."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from generator.config import GenerationConfig
from generator.serving.api import api_app
from generator.serving.keys import ApiKeys
from generator.serving.queue import JobQueue
from generator.webui.paths import PathPolicy
from generator.webui.studio import Studio
from tests.factories import tiny_run_config
from tests.served_app import served_app

ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef"


class Served:
    """A running server with the API, and an HTTP client per key."""

    def __init__(self, url: str, studio: Studio, queue: JobQueue, weights: Path | None):
        self.url, self.studio, self.queue, self.weights = url, studio, queue, weights

    def client(self, key: str | None = ALICE) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=60)


def serve(studio: Studio, queue: JobQueue, **options: Any) -> Iterator[Served]:
    try:
        with served_app(studio, api=api_app(studio, queue, **options)) as demo:
            paths = options.get("paths")
            yield Served(demo.local_url.rstrip("/"), studio, queue,
                         Path(paths.weights_dir) if paths is not None else None)
    finally:
        queue.close()


@pytest.fixture(scope="module")
def served(tiny_pipeline, tiny_files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Served beyond this computer: two API keys, and paths limited to the weights folder, the
    server's own models and each caller's uploads."""
    folder = tmp_path_factory.mktemp("api")
    studio = Studio(outputs_dir=folder / "outputs", text_to_image=tiny_pipeline)
    keys = ApiKeys.load(environ={"GENERATOR_API_KEYS": f"alice:{ALICE},bob:{BOB}"})
    (folder / "weights").mkdir()
    policy = PathPolicy.for_server("0.0.0.0", False, weights_dir=folder / "weights", models=tiny_files.models())
    yield from serve(studio, JobQueue(studio.gpu, max_per_owner=5), keys=keys, local=False, paths=policy)


def t2i(tiny_files, **overrides: Any) -> dict[str, Any]:
    return tiny_run_config(tiny_files, **overrides).to_dict()


def wait(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"the job {job_id} did not end in {timeout} s")


def events(client: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of a job, read as Server-Sent Events until the stream ends."""
    seen: list[tuple[str, dict[str, Any]]] = []
    kind = None
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                seen.append((kind, json.loads(line[6:])))
    return seen


def submit(client: httpx.Client, mode: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = client.post("/jobs", json={"mode": mode, "config": config, **extra})
    assert response.status_code == 202, response.text
    return response.json()


def test_text_to_image_is_submitted_streamed_and_downloaded(served: Served, tiny_files) -> None:
    with served.client() as client:
        job = submit(client, "text-to-image", t2i(tiny_files, steps=6, seed=5, output={"save_every": 2}))
        stream = events(client, job["id"])
        kinds = [kind for kind, _ in stream]
        assert kinds[0] == "queued" and kinds[-1] == "done" and "started" in kinds
        steps = [data["step"] for kind, data in stream if kind == "progress"]
        assert steps == [1, 2, 3, 4, 5, 6]
        previews = [data for kind, data in stream if kind == "preview"]
        assert len(previews) == 3 and previews[0]["url"].endswith(f"/jobs/{job['id']}/preview")
        final = client.get(f"/jobs/{job['id']}").json()
        assert final["status"] == "done" and final["seed"] == 5 and final["step"] == final["total"] == 6
        (image,) = [f for f in final["files"] if f["name"] == "final.png"]
        downloaded = client.get(image["url"].removeprefix("/api/v1"))
        assert downloaded.status_code == 200
        folder = next(p for p in served.studio.outputs_dir.iterdir() if (p / "config.json").is_file()
                      and json.loads((p / "config.json").read_text())["seed"] == 5)
        assert downloaded.content == (folder / "final.png").read_bytes()
        preview = client.get(f"/jobs/{job['id']}/preview")
        assert preview.headers["content-type"] == "image/png" and Image.open(_bytes(preview.content)).size == (32, 32)
        # the same settings again are the same pixels: the API runs what the command line runs
        again = GenerationConfig.from_dict(json.loads((folder / "config.json").read_text()))
        made = served.studio.text_to_image.run(again)
        for _ in made:
            pass
        assert np.array_equal(np.asarray(made.latest_image()), np.asarray(Image.open(folder / "final.png")))


def _bytes(data: bytes):
    import io

    return io.BytesIO(data)


def test_every_served_mode_runs_through_the_api(served: Served, tiny_files) -> None:
    from tests.prior_factories import save_tiny_prior
    from tests.upscaler_factories import compact_state, save_upscaler

    prior = save_tiny_prior(served.weights / "prior", "sos")  # models a client names are in the weights folder
    upscaler = save_upscaler(compact_state(), served.weights / "compact.pth", "params")
    with served.client() as client:
        picture = _png(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
        upload = client.post("/uploads", params={"name": "photo.png"}, content=picture)
        assert upload.status_code == 201, upload.text
        reference = upload.json()["reference"]
        mask = client.post("/uploads", params={"name": "mask.png"},
                           content=_png(np.pad(np.full((16, 16), 255, np.uint8), 8))).json()["reference"]
        jobs = {
            "edit": submit(client, "edit", t2i(tiny_files, steps=3, init={"init": "image", "init_image": reference},
                                               edit={"mask": mask, "mask_blur": 0})),
            "animate": submit(client, "animate", {**t2i(tiny_files, steps=1), "steps_per_frame": 1, "frames": 3}),
            "sample": submit(client, "sample", {"model": str(prior.checkpoint), "n": 2, "batch_size": 2, "seed": 0}),
            "upscale": submit(client, "upscale", {"upscale_model": str(upscaler)}, inputs={"image": reference}),
            "reconstruct": submit(client, "reconstruct", {"image": reference, "vqgan": str(tiny_files.vqgan),
                                                          "vqgan_config": str(tiny_files.vqgan_config)}),
        }
        for mode, job in jobs.items():
            ended = wait(client, job["id"])
            assert ended["status"] == "done", (mode, ended["message"])
            assert ended["mode"] == mode and ended["files"], mode
        names = {mode: [f["name"] for f in wait(client, job["id"])["files"]] for mode, job in jobs.items()}
        assert "final.png" in names["edit"] and "sample-000.png" in names["sample"]
        assert any(name.endswith(".mp4") for name in names["animate"])
        upscaled = wait(client, jobs["upscale"]["id"])["files"]
        got = client.get(upscaled[-1]["url"].removeprefix("/api/v1"))
        assert Image.open(_bytes(got.content)).size == (64, 64)
        # the edit changed only the masked square: outside it the pixels are the upload's
        edit_files = wait(client, jobs["edit"]["id"])["files"]
        edited = np.asarray(Image.open(_bytes(client.get(edit_files[0]["url"].removeprefix("/api/v1")).content)))
        original = np.asarray(Image.open(_bytes(picture)))
        assert np.array_equal(edited[:4, :4], original[:4, :4]) and not np.array_equal(edited[12:20, 12:20],
                                                                                      original[12:20, 12:20])


def _png(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_cancel_ends_a_running_job_within_a_step_and_keeps_its_image(served: Served, tiny_files) -> None:
    with served.client() as client:
        job = submit(client, "text-to-image", t2i(tiny_files, steps=100_000, seed=9))
        seen = 0
        while seen < 3:
            seen = client.get(f"/jobs/{job['id']}").json()["step"]
            time.sleep(0.05)
        cancelled = client.post(f"/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200
        asked_at = cancelled.json()["step"]
        ended = wait(client, job["id"])
        assert ended["status"] == "cancelled" and ended["step"] <= asked_at + 2
        assert [f["name"] for f in ended["files"]][:1] == ["final.png"]  # the work so far is kept
        again = client.post(f"/jobs/{job['id']}/cancel")
        assert again.status_code == 409 and "already ended" in again.json()["detail"]


def test_another_key_cannot_see_or_cancel_a_job_and_no_key_is_refused(served: Served, tiny_files) -> None:
    with served.client(ALICE) as alice, served.client(BOB) as bob, served.client(None) as nobody:
        job = submit(alice, "text-to-image", t2i(tiny_files, steps=100_000))
        try:
            for request in (lambda c: c.get(f"/jobs/{job['id']}"), lambda c: c.post(f"/jobs/{job['id']}/cancel"),
                            lambda c: c.get(f"/jobs/{job['id']}/events"), lambda c: c.get(f"/jobs/{job['id']}/files"),
                            lambda c: c.get(f"/jobs/{job['id']}/preview")):
                response = request(bob)
                assert response.status_code == 404 and "no job" in response.json()["detail"]
            assert job["id"] not in [j["id"] for j in bob.get("/jobs").json()]
            assert job["id"] in [j["id"] for j in alice.get("/jobs").json()]
            refused = nobody.get("/jobs")
            assert refused.status_code == 401 and "needs an API key" in refused.json()["detail"]
            wrong = served.client("not-a-key-of-this-server").get("/jobs")
            assert wrong.status_code == 401
            assert alice.get(f"/jobs/{job['id']}").json()["status"] in ("queued", "running")
        finally:
            alice.post(f"/jobs/{job['id']}/cancel")
            wait(alice, job["id"])


@pytest.mark.parametrize(("body", "status", "sentence"), [
    (b"{not json", 422, "the request's body is not valid JSON"),
    (b'["a list"]', 422, "the request's body must be a JSON object"),
    (b'{"config": {}}', 422, "the request needs 'mode'"),
    (b'{"mode": "text-to-image", "colour": "red"}', 422, "unknown field 'colour' in the request"),
    (b'{"mode": "text-to-image", "config": {"prompts": "x", "colour": "red"}}', 422, "colour"),
    (b'{"mode": "text-to-image", "config": {"prompts": "x", "size": [99999, 64]}}', 422,
     "size 99999x64 is out of range; each side must be between 16 and"),
    (b'{"mode": "text-to-image", "config": {"prompts": "x", "size": [4096, 4096]}}', 422,
     "this job would make a 4096x4096 image (17 megapixels), over this server's limit of 16 per job"),
    (b'{"mode": "text-to-image", "config": {"prompts": "x", "size": [1024, 1024], "upscale": {"upscale": 4}}}', 422,
     "this job would make a 4096x4096 image"),
    (b'{"mode": "text-to-image", "config": {"prompts": ""}}', 422, "the prompt is empty"),
    (b'{"mode": "painting", "config": {}}', 422, "there is no mode called 'painting'"),
    (b'{"mode": "upscale", "config": {}}', 422, "this mode needs the input 'image'"),
    (b'{"mode": "upscale", "config": {}, "inputs": {"image": "upload:0123"}}', 422, "is not one of your uploads"),
    (b'{"mode": "text-to-image", "config": {"prompts": "x", "init": {"init": "image", "init_image": "/etc/passwd"}}}',
     422, "the init image field takes an upload"),
    (b'{"mode": "text-to-image", "config": {"prompts": "x", "models": {"vqgan": "/etc/hostname"}}}', 422,
     "the VQGAN field takes a model name"),
])
def test_bad_requests_are_4xx_with_one_sentence(served: Served, body: bytes, status: int, sentence: str) -> None:
    with served.client() as client:
        response = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and sentence in detail and "\n" not in detail, detail


def test_the_openapi_document_lists_every_endpoint_with_its_schema(served: Served) -> None:
    document = httpx.get(f"{served.url}/api/v1/openapi.json", timeout=30).json()
    paths = document["paths"]
    assert set(paths) == {"/health", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/jobs/{job_id}/preview",
                          "/jobs/{job_id}/events", "/jobs/{job_id}/files", "/jobs/{job_id}/files/{index}", "/uploads"}
    schemas = document["components"]["schemas"]
    assert {"JobRequest", "JobView", "FileView", "UploadView", "Health", "Problem"} <= set(schemas)
    submit_doc = paths["/jobs"]["post"]
    assert submit_doc["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobRequest")
    assert submit_doc["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobView")
    assert submit_doc["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Problem")
    assert {"mode", "config", "inputs"} == set(schemas["JobRequest"]["properties"])
    assert httpx.get(f"{served.url}/api/v1/docs", timeout=30).status_code == 200


def test_health_and_per_identity_quota(served: Served, tiny_files) -> None:
    health = httpx.get(f"{served.url}/api/v1/health", headers={"Authorization": f"Bearer {BOB}"}, timeout=30).json()
    assert health["status"] == "ok" and health["workers"] == 1 and "text-to-image" in health["modes"]
    with served.client(BOB) as bob, served.client(ALICE) as alice:
        long = t2i(tiny_files, steps=100_000)
        mine = [submit(bob, "text-to-image", long) for _ in range(5)]
        try:
            over = bob.post("/jobs", json={"mode": "text-to-image", "config": long})
            assert over.status_code == 429 and "you have 5 jobs waiting or running" in over.json()["detail"]
            assert over.headers["retry-after"] == "30"
            other = submit(alice, "text-to-image", long)  # another identity still has its share
            waiting = alice.get(f"/jobs/{other['id']}").json()
            assert waiting["status"] == "queued" and waiting["position"] >= 1
        finally:
            for job in [*mine, other]:
                client = bob if job in mine else alice
                client.post(f"/jobs/{job['id']}/cancel")
            for job in mine:
                assert wait(bob, job["id"])["status"] == "cancelled"


def test_each_job_ends_with_one_structured_log_line(served: Served, tiny_files, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="generator.serving.jobs"), served.client() as client:
        job = submit(client, "text-to-image", t2i(tiny_files, steps=2))
        wait(client, job["id"])
        time.sleep(0.2)
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "generator.serving.jobs"
               and job["id"] in r.getMessage()]
    assert line["who"] == "api:alice" and line["mode"] == "text-to-image" and line["status"] == "done"
    assert line["run_seconds"] > 0 and line["peak_memory_bytes"] > 0 and line["steps"] == 2


def test_a_server_beyond_this_computer_without_keys_closes_its_api(tiny_pipeline, tmp_path: Path) -> None:
    studio = Studio(outputs_dir=tmp_path / "outputs", text_to_image=tiny_pipeline)
    for server in serve(studio, JobQueue(studio.gpu), local=False):
        response = httpx.get(f"{server.url}/api/v1/jobs", timeout=30)
        assert response.status_code == 403 and "started without API keys" in response.json()["detail"]


def test_on_this_computer_keyless_requests_are_one_local_identity(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    studio = Studio(outputs_dir=tmp_path / "outputs", text_to_image=tiny_pipeline)
    policy = PathPolicy.for_server("127.0.0.1", False, weights_dir=tmp_path / "weights")
    for server in serve(studio, JobQueue(studio.gpu), local=True, paths=policy):
        with server.client(None) as client:
            job = submit(client, "text-to-image", t2i(tiny_files, steps=2))
            assert wait(client, job["id"])["status"] == "done"
            assert [j["id"] for j in client.get("/jobs").json()] == [job["id"]]


def test_web_ui_and_api_jobs_take_turns_on_the_device(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    from generator.webui.jobs import text_to_image_job

    studio = Studio(outputs_dir=tmp_path / "outputs", text_to_image=tiny_pipeline)
    queue = JobQueue(studio.gpu)
    try:
        page_job = text_to_image_job(studio, tiny_run_config(tiny_files, steps=100_000), studio.session())
        while next(page_job).progress is None:  # the web UI's job is running (it holds the device)
            pass
        config = tiny_run_config(tiny_files, steps=2)
        served = queue.submit("api:local", "text-to-image", config.to_dict(),
                              lambda session: text_to_image_job(studio, config, session))
        time.sleep(1.0)
        assert served.status == "queued" and queue.position(served) == 0 and served.step == 0
        next(page_job)
        page_job.close()  # Stop in the web UI: the device is free, the API's job runs
        ends = time.monotonic() + 60
        while not served.ended_yet and time.monotonic() < ends:
            time.sleep(0.05)
        assert served.status == "done" and served.step == 2
    finally:
        queue.close()
