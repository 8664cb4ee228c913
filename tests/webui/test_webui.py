"""The web UI without a browser: jobs, forms, gallery, the API through gradio_client, serving rules."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.config import GenerationConfig, SampleConfig
from generator.errors import InputError
from generator.webui.forms import from_form, to_form
from generator.webui.gallery import list_runs
from generator.webui.jobs import sample_job, text_to_image_job, upscale_job
from generator.webui.studio import Studio
from tests.factories import tiny_run_config

ROOT = Path(__file__).resolve().parents[2]


def test_importing_app_loads_no_model(tmp_path: Path) -> None:
    code = ("import app, sys; from generator.text_to_image.pipeline import TextToImage; "
            "assert not any(isinstance(v, TextToImage) for v in vars(app).values()); print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"GENERATOR_OFFLINE": "1", "GENERATOR_WEIGHTS_DIR": str(tmp_path),
                                 "PATH": "/usr/bin:/bin", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_text_to_image_job_streams_previews_and_writes_every_download(studio: Studio, tiny_files) -> None:
    config = tiny_run_config(tiny_files, steps=6, output={"save_every": 2, "video": True})
    session = studio.session()
    updates = list(text_to_image_job(studio, config, session))
    progress = [u.progress for u in updates if u.progress]
    assert [p[:2] for p in progress] == [(s, 6) for s in range(1, 7)]
    assert progress[0][2].startswith("optimise 1/6")
    assert sum(u.preview is not None for u in updates) == 3
    final = updates[-1]
    assert final.result.endswith("final.png") and Path(final.result).is_file()
    names = {Path(f).name for f in final.files}
    assert {"final.png", "video.mp4", f"{session.folder.name}-frames.zip"} <= names
    assert final.video.endswith("video.mp4")
    assert final.status.startswith("done in") and session.finished.is_set() and session.result == Path(final.result)


def test_stop_closes_the_run_within_a_step_and_keeps_the_latest_image(studio: Studio, tiny_files) -> None:
    session = studio.session()
    job = text_to_image_job(studio, tiny_run_config(tiny_files, steps=10_000), session)
    steps = 0
    for update in job:
        if update.progress:
            steps = update.progress[0]
            if steps == 3:
                break
    job.close()
    assert session.finished.is_set()
    assert session.result is not None and session.result.name == "final.png"
    kept = json.loads((session.folder / "config.json").read_text())
    assert kept["steps"] == session.record.step == 3 and kept["seed"] == 3
    assert Image.open(session.result).size == (32, 32)
    # the kept config repeats exactly the kept image
    again = studio.text_to_image(GenerationConfig.from_dict(kept)).images[0]
    assert np.array_equal(np.asarray(again), np.asarray(Image.open(session.result).convert("RGB")))


def test_errors_reach_the_ui_as_one_sentence(studio: Studio, tiny_files) -> None:
    with pytest.raises(InputError, match="the prompt is empty"):
        list(text_to_image_job(studio, tiny_run_config(tiny_files, prompts=""), studio.session()))


def test_sample_and_upscale_jobs(tmp_path: Path) -> None:
    from generator.sample.loader import load_prior
    from generator.sample.pipeline import Sampler
    from tests.prior_factories import save_tiny_prior
    from tests.upscaler_factories import compact_state, save_upscaler

    prior = save_tiny_prior(tmp_path / "prior", "sos")
    sampler = Sampler(load_prior(prior.checkpoint), model=str(prior.checkpoint))
    studio = Studio(outputs_dir=tmp_path / "out", device="cpu", sampler=sampler)
    config = SampleConfig(model=str(prior.checkpoint), n=2, batch_size=2, seed=0)
    updates = list(sample_job(studio, config, studio.session()))
    final = updates[-1]
    assert [Path(p).name for p in final.results] == ["sample-000.png", "sample-001.png"]
    upscaler = save_upscaler(compact_state(), tmp_path / "compact.pth", "params")
    from generator.config import UpscaleConfig

    updates = list(upscale_job(studio, final.results[0], UpscaleConfig(upscale_model=str(upscaler)), studio.session()))
    assert Path(updates[-1].result).name == "sample-000_x2.png" and Image.open(updates[-1].result).size == (64, 64)
    assert Path(updates[-1].result).parent == tmp_path / "out" / "upscaled"


def test_forms_round_trip_every_field(tiny_files) -> None:
    config = tiny_run_config(tiny_files, seed=None, size=[48, 40], cutouts={"augments": ["flip", "noise"]},
                             upscale={"upscale": 2.0, "upscale_denoise": 0.5})
    values = to_form(config)
    assert values["seed"] == -1 and values["width"] == 48 and values["upscale_denoise"] == 0.5
    assert from_form(GenerationConfig, values) == config
    auto = GenerationConfig()
    assert from_form(GenerationConfig, to_form(auto)) == auto and to_form(auto)["width"] == 0
    sample = SampleConfig(model="ffhq", class_label=None, size=(512, 1024), condition=None)
    assert from_form(SampleConfig, to_form(sample)) == sample


def test_gallery_lists_runs_newest_first_and_skips_broken_folders(studio: Studio, tiny_files) -> None:
    for seed in (1, 2):
        list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=1, seed=seed), studio.session()))
    (studio.outputs_dir / "broken").mkdir()
    Image.new("RGB", (8, 8)).save(studio.outputs_dir / "broken" / "final.png")
    runs = list_runs(studio.outputs_dir)
    assert [run.config["seed"] for run in runs] == [2, 1]
    assert runs[0].mode == "text-to-image" and runs[0].caption == "city at night · seed 2"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_api_through_gradio_client_and_file_serving_rules(served, studio: Studio, tiny_files) -> None:
    from gradio_client import Client

    client = Client(served.local_url, verbose=False)
    info = client.view_api(return_format="dict", print_info=False)
    assert {"/generate", "/sample", "/upscale"} <= set(info["named_endpoints"])
    values = to_form(tiny_run_config(tiny_files, steps=3, seed=11))
    names = [p["parameter_name"] for p in info["named_endpoints"]["/generate"]["parameters"]]
    arguments = {name: values.get(name) for name in names if name != "image_prompt_files"}
    arguments["seamless"] = "xy"  # the Advanced section's "Seamless tile"
    status, preview, result, video, files, info = client.predict(**arguments, image_prompt_files=None,
                                                                 api_name="/generate")
    assert "done in" in status and Path(result).name.endswith(".png")
    assert "city at night · seed 11 · 32x32 · 3 steps" in info  # the generation info under the result
    produced = np.asarray(Image.open(result))  # downloaded by the client, with its visitor cookie
    folder = next(p for p in studio.outputs_dir.iterdir() if p.is_dir())
    assert np.array_equal(produced, np.asarray(Image.open(folder / "final.png")))
    assert json.loads((folder / "config.json").read_text())["edit"]["seamless"] == "xy"
    # nothing is served by path, not even the outputs folder: only copies sent to a visitor, to that visitor
    for outside in (str(folder / "final.png"), "/etc/passwd", str(ROOT / "app.py"), str(tiny_files.vqgan)):
        assert _status(f"{served.local_url}gradio_api/file={outside}") in (403, 404), outside


def test_two_sessions_never_see_each_others_results(served, studio: Studio, tiny_files) -> None:
    from gradio_client import Client

    results: dict[int, str] = {}

    def run(seed: int) -> None:
        client = Client(served.local_url, verbose=False)
        values = to_form(tiny_run_config(tiny_files, steps=2, seed=seed))
        names = [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
                 ["named_endpoints"]["/generate"]["parameters"]]
        output = client.predict(**{n: values.get(n) for n in names if n != "image_prompt_files"},
                                image_prompt_files=None, api_name="/generate")
        results[seed] = str(output[2])

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (21, 22)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert set(results) == {21, 22}
    for seed, received in results.items():  # each session got the image of its own run
        (folder,) = [p for p in studio.outputs_dir.iterdir() if p.name.endswith(f"-{seed}")]
        assert np.array_equal(np.asarray(Image.open(received)), np.asarray(Image.open(folder / "final.png")))
    assert not np.array_equal(np.asarray(Image.open(results[21])), np.asarray(Image.open(results[22])))
    assert len(studio.sessions) == 2


def test_heavy_events_share_one_gpu_slot(studio: Studio) -> None:
    import app

    demo = app.build_demo(studio=studio)
    heavy = {f.api_name: (f.concurrency_id, f.concurrency_limit) for f in demo.fns.values() if f.queue}
    assert heavy["generate"] == heavy["sample"] == heavy["upscale"] == heavy["animate"] == ("gpu", 1)
    # every other queued event runs one job at a time too, except the claims, which only reserve a run
    queued = [f for f in demo.fns.values() if f.queue]
    claims = [f for f in queued if f.concurrency_id == "claims"]
    assert claims and all(f.concurrency_limit is None and f.fn.__name__ == "claimed" for f in claims)
    assert all((f.concurrency_id, f.concurrency_limit) == ("gpu", 1) for f in queued if f not in claims)


def test_main_serves_locally_with_limits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_files) -> None:
    import gradio as gr

    import app

    launched: dict = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs))
    out = tmp_path / "runs"
    assert app.main(["--out", str(out), "--lazy", *tiny_files.cli_args()]) == 0
    assert launched["server_name"] == "127.0.0.1" and launched["share"] is False
    assert launched["allowed_paths"] == [str(out)] and launched["max_file_size"] == "64mb"
    assert launched["show_error"] is False  # visitors never see a Python message
    assert launched["run_history"] is False  # no second history beside the Gallery, nothing sent to a hub bucket
    (gate,) = launched["app_kwargs"]["middleware"]
    assert gate.cls.__name__ == "VisitorGate"
    assert out.is_dir()


def test_errors_reach_an_api_client_as_the_cli_sentence(served, tiny_files) -> None:
    from gradio_client import Client

    client = Client(served.local_url, verbose=False)
    names = [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
             ["named_endpoints"]["/generate"]["parameters"]]
    values = to_form(tiny_run_config(tiny_files, prompts=""))
    with pytest.raises(Exception, match="the prompt is empty; give some text to draw"):
        client.predict(**{n: values.get(n) for n in names if n != "image_prompt_files"}, image_prompt_files=None,
                       api_name="/generate")


def test_batch_count_makes_that_many_runs_with_consecutive_seeds(studio: Studio, tiny_files) -> None:
    session = studio.session()
    updates = list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=2, seed=5), session, count=3))
    folders = sorted(p for p in studio.outputs_dir.iterdir() if p.is_dir())
    seeds = sorted(json.loads((folder / "config.json").read_text())["seed"] for folder in folders)
    assert seeds == [5, 6, 7]
    finals = [u for u in updates if u.result is not None]
    assert len(finals) == 3 and finals[-1].results == [u.result for u in finals]
    assert "3 of 3 done" in finals[-1].status
    assert {Path(r).parent for r in finals[-1].results} == set(folders)
