"""The one driver of a run's events: the command line and the web UI write the same files;
a stopped or failed run keeps its work and records how it ended; no folder without files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.cli.main import main
from generator.drive import RunRecord, drive
from generator.errors import InputError
from generator.webui.jobs import text_to_image_job
from generator.webui.studio import Studio
from tests.factories import tiny_run_config


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def _only(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def test_the_cli_and_the_web_ui_write_the_same_files(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    args = ["city at night", *tiny_files.cli_args(), "--size", "32", "32", "--cutn", "4", "--steps", "6",
            "--seed", "3", "--save-every", "2", "--video", "--precision", "fp32", "--out", str(tmp_path / "cli")]
    assert main(args, make_pipeline=lambda *a, **k: tiny_pipeline) == 0
    config = tiny_run_config(tiny_files, steps=6, output={"save_every": 2, "video": True})
    studio = Studio(outputs_dir=tmp_path / "ui", text_to_image=tiny_pipeline)
    list(text_to_image_job(studio, config, studio.session()))
    cli, ui = _only(tmp_path / "cli"), _only(tmp_path / "ui")
    assert _files(cli) == _files(ui) == ["config.json", "final.png", "frames/000002.png", "frames/000004.png",
                                         "frames/000006.png", "latent.safetensors", "run.json", "video.mp4"]
    assert np.array_equal(np.asarray(Image.open(cli / "final.png")), np.asarray(Image.open(ui / "final.png")))
    assert json.loads((cli / "config.json").read_text()) == json.loads((ui / "config.json").read_text())
    records = [json.loads((folder / "run.json").read_text()) for folder in (cli, ui)]
    for record in records:
        assert record.pop("timings")["total"] > 0
    assert records[0] == records[1] == {"mode": "text-to-image", "label": "city at night", "status": "done",
                                        "step": 6, "total": 6, "seed": 3, "error": None, "parent": None}


def test_a_run_that_fails_its_checks_leaves_no_folder(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    run = tiny_pipeline.run(tiny_run_config(tiny_files, prompts="", image_prompts=""))
    record = RunRecord(run.state.mode)
    with pytest.raises(InputError, match="the prompt is empty"):
        list(drive(run, tmp_path / "out", record=record))
    assert record.status == "failed" and record.folder is None and not (tmp_path / "out").exists()


def test_a_stopped_run_keeps_its_frames_and_latest_image_and_says_so(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    config = tiny_run_config(tiny_files, steps=50, output={"save_every": 2, "video": True})
    record = RunRecord("text-to-image")
    events = drive(tiny_pipeline.run(config), tmp_path, record=record)
    for event in events:
        if getattr(event, "step", 0) == 5 and type(event).__name__ == "Progress":
            break
    events.close()
    assert record.status == "stopped" and record.step == 5 and record.result == record.folder / "final.png"
    assert _files(record.folder) == ["config.json", "final.png", "frames/000002.png", "frames/000004.png",
                                     "latent.safetensors", "run.json", "video.mp4"]
    summary = json.loads((record.folder / "run.json").read_text())
    assert summary["status"] == "stopped" and summary["step"] == 5 and summary["total"] == 50
    assert json.loads((record.folder / "config.json").read_text())["steps"] == 5
