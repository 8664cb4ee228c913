"""Each visitor sees, deletes and downloads its own runs; the shared gallery shows all. Who owns
which run is recorded outside the outputs folder, which holds nothing but runs."""

from __future__ import annotations

import json
import re
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from generator.errors import InputError
from generator.webui.gallery import delete_run, list_runs, record_owner, record_session_owner, zip_run
from generator.webui.jobs import text_to_image_job
from generator.webui.owners import LEGACY_FILE, OwnersIndex
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
def owners(tmp_path: Path) -> OwnersIndex:
    outputs = tmp_path / "outputs"
    for seed, name in enumerate(("alice-1", "alice-2", "bob-1", "cli-1")):
        _run(outputs, name, seed)
    index = OwnersIndex(outputs)
    for name in ("alice-1", "alice-2"):
        assert record_owner(index, outputs / name, "alice")
    assert record_owner(index, "bob-1", "bob")
    return index


@pytest.fixture
def outputs(owners: OwnersIndex) -> Path:
    return owners.outputs_dir


def _names(runs) -> set[str]:
    return {run.folder.name for run in runs}


def test_each_visitor_sees_its_own_runs_and_the_shared_gallery_all(outputs: Path, owners: OwnersIndex) -> None:
    assert _names(list_runs(outputs, owner="alice", owners=owners)) == {"alice-1", "alice-2"}
    assert _names(list_runs(outputs, owner="bob", owners=owners)) == {"bob-1"}
    assert _names(list_runs(outputs, owner="carol", owners=owners)) == set()
    shared = list_runs(outputs, owners=owners)
    assert _names(shared) == {"alice-1", "alice-2", "bob-1", "cli-1"}  # the command line's run only here
    assert {run.folder.name: run.owner for run in shared}["cli-1"] is None
    # the index is beside the outputs folder, not in it: no file there but the runs
    assert owners.path == outputs.parent / ".outputs.webui" / "owners.json"
    assert json.loads(owners.path.read_text()) == {"alice-1": "alice", "alice-2": "alice", "bob-1": "bob"}
    assert sorted(p.name for p in outputs.iterdir()) == ["alice-1", "alice-2", "bob-1", "cli-1"]
    studio = Studio(outputs_dir=outputs, device="cpu")
    assert _names(studio.runs_for("bob")) == {"bob-1"} and studio.runs_for("") == []
    studio.shared_gallery = True
    assert len(studio.runs_for("bob")) == 4


def test_round_1_index_in_the_outputs_folder_is_moved_out_and_not_honoured(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    _run(outputs, "old-run", 1)
    (outputs / LEGACY_FILE).write_text(json.dumps({"old-run": "a-leaked-id"}))
    studio = Studio(outputs_dir=outputs, device="cpu", state_dir=tmp_path / "state")
    studio.owners.prepare()
    assert not (outputs / LEGACY_FILE).exists() and (tmp_path / "state" / "leaked-owners.json").is_file()
    assert studio.runs_for("a-leaked-id") == []  # its ids were public, so they own nothing
    studio.shared_gallery = True
    assert _names(studio.runs_for("anyone")) == {"old-run"}


def test_a_folder_is_never_handed_to_another_owner(outputs: Path, owners: OwnersIndex) -> None:
    assert not record_owner(owners, "alice-1", "bob")
    assert not record_owner(owners, "../outputs/cli-1", "bob")
    assert not record_owner(owners, outputs.parent / "elsewhere", "bob")
    assert record_owner(owners, "alice-1", "alice")  # again: fine
    assert owners.read()["alice-1"] == "alice" and "cli-1" not in owners.read()


def test_concurrent_records_are_all_kept(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    for index in range(24):
        _run(outputs, f"run-{index}", index)
    index_ = OwnersIndex(outputs)
    threads = [threading.Thread(target=record_owner, args=(index_, f"run-{i}", f"owner-{i % 3}")) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert index_.read() == {f"run-{i}": f"owner-{i % 3}" for i in range(24)}
    assert not [p for p in index_.state_dir.iterdir() if p.name.endswith(".tmp")]


def test_delete_removes_own_runs_only(outputs: Path, owners: OwnersIndex) -> None:
    delete_run(owners, "alice-1", "alice")
    assert not (outputs / "alice-1").exists() and "alice-1" not in owners.read()
    assert _names(list_runs(outputs, owner="alice", owners=owners)) == {"alice-2"}
    assert not [p for p in outputs.iterdir() if p.name.startswith(".deleting-")]
    sentences = set()
    for name in ("bob-1", "cli-1", "alice-1", "nothing", "..", "../outputs/bob-1", "/etc", str(outputs / "bob-1"),
                 "../.outputs.webui", ".", ""):
        with pytest.raises(InputError) as caught:
            delete_run(owners, name, "alice")
        sentences.add(re.sub(r"^'[^']*' ", "NAME ", str(caught.value)))
    assert sentences == {"NAME is not one of your runs; choose a run in the gallery to delete."}
    assert (outputs / "bob-1").is_dir() and (outputs / "cli-1").is_dir() and owners.path.is_file()
    with pytest.raises(InputError, match="made by another session .*only your own runs"):
        delete_run(owners, "bob-1", "alice", shared=True)  # seen in the shared gallery: deleting stays own only
    with pytest.raises(InputError):
        delete_run(owners, "cli-1", "", shared=True)
    assert (outputs / "bob-1").is_dir() and (outputs / "cli-1").is_dir()


def test_a_symlink_to_a_folder_outside_is_no_run(outputs: Path, owners: OwnersIndex, tmp_path: Path) -> None:
    outside = _run(tmp_path / "elsewhere", "victim", 9)
    (outputs / "link").symlink_to(outside)
    with owners.locked():
        owners.write({**owners.read(), "link": "alice"})
    with pytest.raises(InputError, match="not one of your runs"):
        delete_run(owners, "link", "alice")
    with pytest.raises(InputError, match="not one of your runs"):
        zip_run(owners, "link", "alice")
    assert (outside / "final.png").is_file()


def test_zip_of_a_run(outputs: Path, owners: OwnersIndex, tmp_path: Path) -> None:
    archive = zip_run(owners, "alice-2", "alice")
    assert archive.name == "alice-2.zip" and not archive.is_relative_to(outputs)
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == ["alice-2/config.json", "alice-2/final.png", "alice-2/frames/000001.png"]
        assert opened.read("alice-2/final.png") == (outputs / "alice-2" / "final.png").read_bytes()
    with pytest.raises(InputError, match="'bob-1' is not one of your runs; choose a run in the gallery to download"):
        zip_run(owners, "bob-1", "alice")
    with pytest.raises(InputError, match="not one of your runs"):
        zip_run(owners, "cli-1", None)
    shared = zip_run(owners, "cli-1", "alice", shared=True, dest_dir=tmp_path)  # the shared gallery: any run
    assert shared == tmp_path / "cli-1.zip" and zipfile.ZipFile(shared).testzip() is None


def test_a_web_ui_run_is_recorded_for_its_visitor(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    studio = Studio(outputs_dir=tmp_path / "outputs", text_to_image=tiny_pipeline)
    session = studio.session()
    session.owner = "owner-a"  # what the visitor cookie gives a request (see test_visitors)
    list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=1, seed=5), session))
    assert [run.config["seed"] for run in studio.runs_for("owner-a")] == [5]  # the job recorded its owner
    assert not record_session_owner(studio.owners, session.record, "owner-b")  # owners are never reassigned
    assert studio.runs_for("owner-b") == []
    assert not record_session_owner(studio.owners, session.record, None)
    assert not record_session_owner(studio.owners, None, "owner-a")
