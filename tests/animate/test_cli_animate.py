"""``python -m generator animate``: Ctrl-C and --resume (real subprocesses), and one-sentence errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generator.animate.config import AnimationConfig
from generator.cli.main import main
from tests.animate.conftest import animate, frame_paths, frames_of
from tests.factories import ctrl_c_cli

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--size", "32", "32", "--cutn", "4", "--precision", "fp32"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generator", "animate", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _published(folder: Path) -> int:
    return len(frame_paths(folder))


def _only_folder(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def test_resume_after_ctrl_c_gives_the_frames_of_an_uninterrupted_run(tiny_pipeline, tiny_files,
                                                                     tmp_path: Path) -> None:
    frames = 40  # enough that the SIGINT lands mid-run on a fast, idle machine too
    args = ["a long zoom ^ a longer zoom", *tiny_files.cli_args(), "--frames", str(frames), "--steps", "1",
            "--steps-per-frame", "1", "--zoom", "0:1.0, 8:1.1", "--angle", "3", "--frame-init-weight", "0.1",
            "--seed", "4", *FAST]
    returncode, stderr = ctrl_c_cli(["animate", *args, "--out", str(tmp_path / "a")],
                                    lambda: sum(map(_published, tmp_path.glob("a/*"))) >= 3)
    assert returncode == 130, stderr
    stopped = _only_folder(tmp_path / "a")
    record = json.loads((stopped / "run.json").read_text())
    kept = len(frames_of(stopped))
    assert record["status"] == "stopped" and record["mode"] == "animate" and 3 <= kept < frames, (record, kept)
    assert (stopped / "video.mp4").is_file() and (stopped / "final.png").is_file()
    assert len((stopped / "frames.jsonl").read_text().splitlines()) >= kept

    resumed = _cli("--resume", str(stopped), "--out", str(tmp_path / "b"))
    assert resumed.returncode == 0, resumed.stderr
    continued = _only_folder(tmp_path / "b")
    assert json.loads((continued / "run.json").read_text())["parent"] == str(stopped)
    # the same settings (as recorded) without a stop, in this process
    recorded = AnimationConfig.from_dict(json.loads((stopped / "config.json").read_text()))
    expected = frames_of(animate(tiny_pipeline, recorded, tmp_path / "c").folder)
    got = frames_of(continued)
    assert len(got) == len(expected) == frames
    for index, (frame, reference) in enumerate(zip(got, expected, strict=True)):
        assert np.array_equal(frame, reference), f"frame {index} differs (the run stopped after {kept})"
    records = [json.loads(line) for line in (continued / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(frames))
    assert sum("resumed_from" in r for r in records) == kept


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a cat", "--zoom", "0"], "--zoom must be more than 0 at every frame"),
        (["a cat", "--zoom", "0:1.0, 60"], "has the part '60', which is not FRAME:VALUE"),
        (["a cat", "--frames", "0"], "frames must be between 1 and 100000, not 0"),
        (["a cat", "--prompt-at", "a forest"], "does not start with a frame number"),
        (["a cat", "--blend", "2"], "blend must be between 0 and 1"),
        (["a cat", "--interpolate", "0"], "interpolate must be between 1 and 16"),
        (["a cat", "--video-init", "/nonexistent/in.mp4"], "the video /nonexistent/in.mp4 does not exist"),
    ],
)
def test_bad_input_gets_one_error_line(tiny_files, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    code = main(["animate", *args, *tiny_files.cli_args(), *FAST, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert not list(tmp_path.iterdir())


def test_resume_refuses_other_modes_missing_frames_finished_runs_and_new_settings(tiny_files, tmp_path: Path,
                                                                                  capsys) -> None:
    def error(*args: str) -> str:
        assert main(["animate", *args, "--out", str(tmp_path / "out")]) == 1
        return capsys.readouterr().err.strip().splitlines()[-1]

    picture = tmp_path / "picture"
    assert main(["a cat", *tiny_files.cli_args(), *FAST, "--steps", "1", "--out", str(picture)]) == 0
    assert "was made by text-to-image, not by animate" in error("--resume", str(_only_folder(picture)))
    assert "is not a folder" in error("--resume", str(tmp_path / "nowhere"))

    animation = tmp_path / "animation"
    assert main(["animate", "a cat", *tiny_files.cli_args(), *FAST, "--steps", "1", "--steps-per-frame", "0",
                 "--frames", "3", "--out", str(animation)]) == 0
    folder = _only_folder(animation)
    assert "already holds all 3 frames" in error("--resume", str(folder))
    assert "--frames cannot be given with it" in error("--resume", str(folder), "--frames", "5")
    (folder / "frames" / "000001.png").unlink()
    assert "is missing frame 1 (frames/000001.png)" in error("--resume", str(folder))
    capsys.readouterr()


def test_a_restyle_with_sound_logs_no_temporary_path(tiny_files, clip_with_sound, tmp_path: Path, capsys) -> None:
    """Its video is made through temporary files; the log names the run folder, not them (issue 26, point 7)."""
    from generator.cli.main import main

    code = main(["animate", "an oil painting", "--video-init", str(clip_with_sound), "--steps-per-frame", "1",
                 "--size", "32", "32", "--cutn", "4", *tiny_files.cli_args(), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0 and "video.mp4" in err
    assert ".video-" not in err and "/tmp/" not in err.replace(str(tmp_path), "")
