"""Every argument check comes before any model is loaded or any weight downloaded: an empty
prompt, a malformed one or a missing input file is one sentence at once, from the command line
(text to image, edit, animate, batch) and from the web UI's jobs (issue 26, point 2)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from generator.cli.main import main
from generator.config import GenerationConfig
from generator.errors import InputError
from generator.text_to_image.pipeline import TextToImage
from generator.weights import store
from generator.workbench import Workbench

EMPTY = "the prompt is empty; give some text to draw, an image prompt or a noise prompt."


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail loudly (and record) if anything is loaded or downloaded."""
    attempts: list[str] = []

    def refuse(what: str):
        def refused(*args, **kwargs):
            attempts.append(what)
            raise AssertionError(f"{what} was attempted before the arguments were checked")
        return refused

    monkeypatch.setattr(store, "ensure", refuse("a download"))
    monkeypatch.setattr(TextToImage, "from_workbench", refuse("a model load"))
    monkeypatch.setattr(Workbench, "vqgan", refuse("a VQGAN load"))
    monkeypatch.setattr(Workbench, "clip", refuse("a CLIP load"))
    return attempts


@pytest.mark.parametrize(("args", "message"), [
    (["", "--weights-dir", "{tmp}"], EMPTY),
    (["   "], EMPTY),
    (["a cat | "], "in the prompt 'a cat | ' is empty; remove the extra '|'"),
    (["a cat", "--init", "image", "--init-image", "{tmp}/nope.png"], "init image {tmp}/nope.png does not exist"),
    (["a cat", "--image-prompts", "{tmp}/missing.png"], "image prompt file {tmp}/missing.png does not exist"),
    (["a red sky @ {tmp}/sky.png"], "region mask {tmp}/sky.png does not exist"),
    (["animate", ""], EMPTY),
    (["animate", "--prompt-at", "10=a forest"], "no prompt is in force at frame 0"),
    (["edit", "{tmp}/photo.png", "", "--mask", "alpha"], EMPTY),
    (["edit", "{tmp}/photo.png", "a cat", "--mask", "{tmp}/nomask.png"], "mask {tmp}/nomask.png does not exist"),
])
def test_bad_arguments_are_one_sentence_before_anything_loads(args: list[str], message: str, tmp_path: Path,
                                                               capsys, no_loading: list[str]) -> None:
    Image.new("RGBA", (32, 32)).save(tmp_path / "photo.png")
    code = main([arg.replace("{tmp}", str(tmp_path)) for arg in args] + ["--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code != 0 and message.replace("{tmp}", str(tmp_path)) in error, error
    assert no_loading == [] and not (tmp_path / "out").exists()
    assert error.count("error:") == 1


def test_bad_batch_jobs_fail_at_once_and_a_batch_of_only_bad_jobs_loads_nothing(tmp_path: Path, capsys,
                                                                                no_loading: list[str]) -> None:
    jobs = tmp_path / "prompts.txt"
    jobs.write_text("a cat | \na lighthouse @ missing.png\n")
    code = main(["batch", str(jobs), "--out", str(tmp_path / "out")])
    assert code != 0 and no_loading == [], capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "out" / "batch.jsonl").read_text().splitlines()]
    assert [record["status"] for record in records] == ["failed", "failed"]
    assert "in the prompt 'a cat |' is empty" in records[0]["error"]
    assert "region mask missing.png does not exist" in records[1]["error"]


def test_the_web_ui_says_an_empty_prompt_before_loading_models(tmp_path: Path) -> None:
    from generator.webui.jobs import text_to_image_job

    class Studio:
        pool = None  # jobs run here

        def text_to_image_for(self, models):
            raise AssertionError("models were loaded before the prompt was checked")

    session = SimpleNamespace(running=lambda: pytest.fail("the run started"))
    with pytest.raises(InputError, match="the prompt is empty"):
        next(text_to_image_job(Studio(), GenerationConfig(prompts=""), session))


def test_an_empty_prompt_is_answered_before_any_model_code_is_imported() -> None:
    """The answer comes in a moment: only torch is imported before the check, not CLIP, kornia,
    the workbench or the web UI (a fresh process, as a user's first command)."""
    import subprocess
    import sys

    code = ("import sys; from generator.cli.main import main; code = main(['']); heavy = ('open_clip', 'kornia', "
            "'gradio', 'generator.workbench', 'generator.text_to_image.pipeline'); "
            "print(code, sorted(name for name in heavy if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.split("\n")[0] == "1 []", done.stdout + done.stderr
    assert EMPTY in done.stderr
