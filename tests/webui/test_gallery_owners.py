"""Each browser session sees, deletes and downloads its own runs; the shared gallery shows all."""

from __future__ import annotations

import json
import re
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from generator.errors import InputError
from generator.webui.gallery import (
    OWNERS_FILE,
    delete_run,
    list_runs,
    read_owners,
    record_owner,
    record_session_owner,
    zip_run,
)
from generator.webui.jobs import text_to_image_job
from generator.webui.studio import Studio
from tests.factories import tiny_run_config


def _run(outputs: Path, name: str, seed: int) -> Path:
    folder = outputs / name
    (folder / "frames").mkdir(parents=True)
    Image.new("RGB", (8, 8), (seed, 0, 0)).save(folder / "final.png")
    Image.new("RGB", (8, 8)).save(folder / "frames" / "000001.png")
    (folder / "config.json").write_text(json.dumps({"prompts": f"run {seed}", "seed": seed}))
    return folder


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    outputs = tmp_path / "outputs"
    for seed, name in enumerate(("alice-1", "alice-2", "bob-1", "cli-1")):
        _run(outputs, name, seed)
    for name in ("alice-1", "alice-2"):
        assert record_owner(outputs, outputs / name, "alice")
    assert record_owner(outputs, "bob-1", "bob")
    return outputs


def _names(runs) -> set[str]:
    return {run.folder.name for run in runs}


def test_each_session_sees_its_own_runs_and_the_shared_gallery_all(outputs: Path) -> None:
    assert _names(list_runs(outputs, owner="alice")) == {"alice-1", "alice-2"}
    assert _names(list_runs(outputs, owner="bob")) == {"bob-1"}
    assert _names(list_runs(outputs, owner="carol")) == set()
    shared = list_runs(outputs)
    assert _names(shared) == {"alice-1", "alice-2", "bob-1", "cli-1"}  # the command line's run only here
    assert {run.folder.name: run.owner for run in shared}["cli-1"] is None
    assert json.loads((outputs / OWNERS_FILE).read_text()) == {"alice-1": "alice", "alice-2": "alice",
                                                                "bob-1": "bob"}
    studio = Studio(outputs_dir=outputs, device="cpu")
    assert _names(studio.runs_for("bob")) == {"bob-1"}
    studio.shared_gallery = True
    assert len(studio.runs_for("bob")) == 4


def test_a_folder_is_never_handed_to_another_owner(outputs: Path) -> None:
    assert not record_owner(outputs, "alice-1", "bob")
    assert not record_owner(outputs, "../outputs/cli-1", "bob")
    assert not record_owner(outputs, outputs.parent / "elsewhere", "bob")
    assert record_owner(outputs, "alice-1", "alice")  # again: fine
    assert read_owners(outputs)["alice-1"] == "alice" and "cli-1" not in read_owners(outputs)


def test_concurrent_records_are_all_kept(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    for index in range(24):
        _run(outputs, f"run-{index}", index)
    threads = [threading.Thread(target=record_owner, args=(outputs, f"run-{i}", f"owner-{i % 3}")) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert read_owners(outputs) == {f"run-{i}": f"owner-{i % 3}" for i in range(24)}
    assert not [p for p in outputs.iterdir() if p.name.endswith(".tmp")]


def test_delete_removes_own_runs_only(outputs: Path) -> None:
    delete_run(outputs, "alice-1", "alice")
    assert not (outputs / "alice-1").exists() and "alice-1" not in read_owners(outputs)
    assert _names(list_runs(outputs, owner="alice")) == {"alice-2"}
    assert not [p for p in outputs.iterdir() if p.name.startswith(".deleting-")]
    sentences = set()
    for name in ("bob-1", "cli-1", "alice-1", "nothing", "..", "../outputs/bob-1", "/etc", str(outputs / "bob-1"),
                 f"{OWNERS_FILE}", ".", ""):
        with pytest.raises(InputError) as caught:
            delete_run(outputs, name, "alice")
        sentences.add(re.sub(r"^'[^']*' ", "NAME ", str(caught.value)))
    assert sentences == {"NAME is not one of your runs; choose a run in the gallery to delete."}
    assert (outputs / "bob-1").is_dir() and (outputs / "cli-1").is_dir() and (outputs / OWNERS_FILE).is_file()
    with pytest.raises(InputError, match="made by another session .*only your own runs"):
        delete_run(outputs, "bob-1", "alice", shared=True)  # seen in the shared gallery: deleting stays own only
    with pytest.raises(InputError):
        delete_run(outputs, "cli-1", "", shared=True)
    assert (outputs / "bob-1").is_dir() and (outputs / "cli-1").is_dir()


def test_a_symlink_to_a_folder_outside_is_no_run(outputs: Path, tmp_path: Path) -> None:
    outside = _run(tmp_path / "elsewhere", "victim", 9)
    (outputs / "link").symlink_to(outside)
    (outputs / OWNERS_FILE).write_text(json.dumps({**read_owners(outputs), "link": "alice"}))
    with pytest.raises(InputError, match="not one of your runs"):
        delete_run(outputs, "link", "alice")
    with pytest.raises(InputError, match="not one of your runs"):
        zip_run(outputs, "link", "alice")
    assert (outside / "final.png").is_file()


def test_zip_of_a_run(outputs: Path, tmp_path: Path) -> None:
    archive = zip_run(outputs, "alice-2", "alice")
    assert archive.name == "alice-2.zip" and not archive.is_relative_to(outputs)
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == ["alice-2/config.json", "alice-2/final.png", "alice-2/frames/000001.png"]
        assert opened.read("alice-2/final.png") == (outputs / "alice-2" / "final.png").read_bytes()
    with pytest.raises(InputError, match="'bob-1' is not one of your runs; choose a run in the gallery to download"):
        zip_run(outputs, "bob-1", "alice")
    with pytest.raises(InputError, match="not one of your runs"):
        zip_run(outputs, "cli-1", None)
    shared = zip_run(outputs, "cli-1", "alice", shared=True, dest_dir=tmp_path)  # the shared gallery: any run
    assert shared == tmp_path / "cli-1.zip" and zipfile.ZipFile(shared).testzip() is None


def test_a_web_ui_run_is_recorded_for_its_session(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    studio = Studio(outputs_dir=tmp_path / "outputs", text_to_image=tiny_pipeline)
    session = studio.session()
    session.owner = "owner-a"  # the page sets it from the browser's local storage
    list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=1, seed=5), session))
    assert [run.config["seed"] for run in studio.runs_for("owner-a")] == [5]  # the job recorded its owner
    assert not record_session_owner(studio.outputs_dir, session.record, "owner-b")  # owners are never reassigned
    assert studio.runs_for("owner-b") == []
    assert not record_session_owner(studio.outputs_dir, session.record, None)
    assert not record_session_owner(studio.outputs_dir, None, "owner-a")
