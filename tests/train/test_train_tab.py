"""The web UI's Train tab without a browser: its jobs (generator.train.tab) driven as Gradio
drives them, on a tiny VQGAN (f8, 32-pixel crops of a handful of generated images, CPU)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import torch

from generator.decoder.loader import load_vqgan
from generator.errors import GeneratorError
from generator.train.tab import (
    TrainForm,
    checked_form,
    latest_run,
    resume_job,
    said_for_the_form,
    stop_message,
    train_job,
)
from generator.train.uploads import UPLOADS_GRACE, sweep_uploads
from generator.webui.gallery import list_runs
from generator.webui.jobs import Update
from generator.webui.paths import PathPolicy
from generator.webui.studio import Session, Studio
from generator.webui.tabs.page import Page
from tests.train.vqgan_helpers import write_images

FAST = dict(model="tiny", size=32, batch_size=4, lr=1e-3, seed=0, precision="fp32")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: more threads on a busy two-core machine are slower
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Studio:
    root = tmp_path_factory.mktemp("train-tab")
    return Studio(outputs_dir=root / "outputs", device=torch.device("cpu"), weights_dir=root / "weights",
                  offline=True)


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    folder = write_images(tmp_path_factory.mktemp("uploads"), count=8, size=48)
    return tuple(str(path) for path in sorted(folder.glob("*.png")))


def _visitor(studio: Studio, owner: str = "visitor-a") -> Session:
    return Session(owner=owner, key=f"{owner}:page", gpu=studio.gpu)


@pytest.fixture(scope="module")
def trained(studio: Studio, uploads: tuple[str, ...]) -> tuple[list[Update], Session]:
    """A tiny VQGAN trained for 20 steps through the tab's job, its updates and session."""
    session = _visitor(studio)
    updates = list(train_job(studio, TrainForm(images=uploads, steps=20, **FAST), session))
    return updates, session


def test_training_sends_loss_points_while_it_runs_a_grid_and_registers_a_loadable_vqgan(studio: Studio, trained):
    updates, session = trained
    running, final = updates[:-1], updates[-1]
    plots = [update.plot for update in running if update.plot is not None and len(update.plot)]
    assert plots, "no loss points arrived while the run was going"
    assert list(plots[0].columns) == ["step", "loss", "kind"] and {"total", "L1", "codebook"} <= set(plots[-1]["kind"])
    assert len(plots) >= 1 and plots[0]["step"].min() == 1
    steps = [update.progress[0] for update in running if update.progress is not None]
    assert steps == list(range(1, 21))  # the status line's progress, every step
    grids = [update.preview for update in running if update.preview is not None]
    assert grids and grids[0].width >= 256  # the recon grid, enlarged for the page
    whole = final.plot
    assert sorted(set(whole["step"])) == list(range(1, 21)) and (whole["loss"] > 0).all()
    assert final.status.startswith("Done: the VQGAN my-vqgan trained to step 20 in ") and final.status.endswith(
        "It is in the weights folder (my-vqgan.ckpt): every VQGAN menu lists it.")
    registered = Path(final.result)
    assert registered == studio.weights_dir / "my-vqgan.ckpt" and registered.with_suffix(".yaml").is_file()
    run_folder = session.record.folder  # the downloads: the run folder's own copy, in the official formats
    assert final.files == [str(run_folder / "last.ckpt"), str(run_folder / "last.yaml")]
    assert load_vqgan(final.files[0], final.files[1]).n_codes == 512
    assert any(update.files == [] for update in running[:3])  # a new run clears the last one's downloads
    vqgan = load_vqgan(registered, weights_dir=studio.weights_dir)
    assert vqgan.downsample_factor == 8 and vqgan.n_codes == 512
    record = session.record
    assert record.status == "done" and record.step == 20 and record.folder.name.startswith("train-vqgan-my-vqgan-")
    assert studio.owners.owner(record.folder.name) == "visitor-a"  # the visitor's run
    copied = sorted((studio.outputs_dir / ".train-uploads").glob("*/my-vqgan/*.png"))
    assert len(copied) == 8  # the uploads, in a private folder of the outputs area
    assert list_runs(studio.outputs_dir) == []  # neither is a gallery run
    assert session.finished.is_set() and not studio.gpu.locked()


def test_stop_keeps_a_resumable_run_and_resume_goes_on_to_the_target(studio: Studio, uploads, trained):
    session = _visitor(studio, "visitor-b")
    job = train_job(studio, TrainForm(images=uploads, steps=40, name="stopped-one", **FAST), session)
    for update in job:
        if update.progress is not None and update.progress[0] >= 6:
            break
    job.close()  # what Gradio does on Stop, at the job's next yield
    record = session.record
    assert record.status == "stopped" and 6 <= record.step < 40 and session.finished.is_set()
    assert (record.folder / "last.ckpt").is_file() and not studio.gpu.locked()
    said = stop_message(record)
    assert said.startswith(f"Stopped at step {record.step} of 40: {record.folder.name} keeps it, and the VQGAN so far "
                           "is in the weights folder as stopped-one.") and said.endswith("Resume goes on from there.")
    stopped_at, folder = record.step, record.folder
    assert latest_run(studio, _visitor(studio, "visitor-b")) == folder  # found again after a reload (its owner)
    assert latest_run(studio, _visitor(studio, "someone-else")) is None

    updates = list(resume_job(studio, 40, session))
    steps = [update.progress[0] for update in updates if update.progress is not None]
    assert steps == list(range(stopped_at + 1, 41))
    first_plot = next(update.plot for update in updates if update.plot is not None)
    assert first_plot["step"].min() == 1  # the plot shows the run's history before the new points
    assert updates[-1].status.startswith(f"Done: the VQGAN stopped-one trained on to step 40 ({40 - stopped_at} more "
                                         "steps in ")
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 40 and session.record.folder == folder and session.record.status == "done"
    with pytest.raises(GeneratorError, match=r"^train-vqgan-stopped-one-.* is already at step 40; give more steps"):
        list(resume_job(studio, 40, session))


def test_a_prior_trains_over_the_trained_vqgan(studio: Studio, uploads, trained):
    updates, _ = trained
    session = _visitor(studio)
    form = TrainForm(what="prior", images=uploads, vqgan=updates[-1].result, model="tiny", size=32, steps=6,
                     batch_size=4, seed=0, precision="fp32")
    prior_updates = list(train_job(studio, form, session))
    points = [update.plot for update in prior_updates if update.plot is not None and len(update.plot)]
    assert points and set(points[-1]["kind"]) == {"train", "validation"}
    assert any(update.preview is not None for update in prior_updates)  # sample grids
    final = prior_updates[-1]
    assert final.status.startswith("Done: the prior my-prior_transformer trained to step 6") and \
        final.status.endswith("(my-prior_transformer.ckpt): every prior menu lists it.")
    assert Path(final.result).is_file() and session.record.folder.name.startswith("train-prior-my-prior-")
    folder = session.record.folder
    assert final.files == [str(folder / "my-prior_transformer.ckpt"), str(folder / "my-prior_transformer.yaml")]


@pytest.mark.parametrize(("changes", "said"), [
    (dict(images=()), "upload the training images first"),
    (dict(images=("notes.txt",)), "notes.txt is not an image; upload PNG, JPEG or WebP images only."),
    (dict(steps=0), "steps must be a whole number of 1 or more, not 0."),
    (dict(batch_size=0), "batch size must be a whole number of 1 or more, not 0."),
    (dict(lr=-1.0), "learning rate must be a positive number, not -1.0."),
    (dict(size=16), "the crop size must be 24 pixels or more"),
    (dict(size=36), "size 36 is not a multiple of the VQGAN's downsampling factor 8; use 32 or 40."),
    (dict(name="a b"), "name 'a b' cannot be a file name"),
    (dict(name="my-vqgan"), "a model called my-vqgan is already in the weights folder"),
    (dict(model="huge"), "model size must be one of tiny, small, base or a VQGAN .yaml, not 'huge'."),
    (dict(what="prior"), "choose the VQGAN whose codes the prior learns in the menu"),
    (dict(what="prior", vqgan="my-vqgan.ckpt", model="huge"), "the prior's size must be one of tiny, small, base"),
])
def test_mistakes_are_one_sentence_before_anything_is_trained(studio: Studio, uploads, trained, changes, said):
    runs_before = sorted(p.name for p in studio.outputs_dir.iterdir())
    uploads_before = sorted((studio.outputs_dir / ".train-uploads").iterdir())
    session = _visitor(studio, "visitor-c")
    with pytest.raises(GeneratorError) as raised:
        list(train_job(studio, TrainForm(**{"images": uploads, "steps": 5, **FAST, **changes}), session))
    message = str(raised.value)
    assert message.startswith(said) and "\n" not in message and "--" not in message
    assert sorted(p.name for p in studio.outputs_dir.iterdir()) == runs_before  # no run folder
    assert sorted((studio.outputs_dir / ".train-uploads").iterdir()) == uploads_before  # no copy left
    assert session.finished.is_set() and not studio.gpu.locked()


def test_resume_without_a_run_is_a_sentence(studio: Studio):
    with pytest.raises(GeneratorError, match="^there is no training run of yours to resume; train a model first.$"):
        list(resume_job(studio, 10, _visitor(studio, "nobody")))


def test_command_line_flags_are_said_in_the_forms_words():
    assert said_for_the_form("--size 20 is not a multiple; use a larger --size or fewer --disc-layers.") == \
        "size 20 is not a multiple; use a larger size or fewer --disc-layers."
    assert said_for_the_form("choose another --name, or resume its run with --resume.") == \
        "choose another name, or resume its run with Resume."


def test_the_form_served_to_a_network_takes_uploads_and_named_sizes_only(studio: Studio, uploads, tmp_path: Path):
    page = Page(studio, PathPolicy(studio.weights_dir, open=False), 0)
    form = dict(what="vqgan", images=[], name="", model="tiny", vqgan="", size=32, steps=10, batch_size=4, lr=1e-3)
    assert checked_form(page, form, None) == TrainForm(size=32, steps=10, batch_size=4, lr=1e-3)
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not served to anyone")
    for images in ([str(outside)], [str(tmp_path / "missing.png")], ["https://example.com/a.png"], [uploads[0]]):
        with pytest.raises(GeneratorError, match="^the training images field takes your uploads only; upload the "
                                                 "images.$"):
            checked_form(page, {**form, "images": images}, None)
    with pytest.raises(GeneratorError, match="^choose the model size: tiny, small, base.$"):
        checked_form(page, {**form, "model": str(tmp_path / "model.yaml")}, None)
    with pytest.raises(GeneratorError, match="^the VQGAN field takes a model name from the menu"):
        checked_form(page, {**form, "vqgan": str(outside)}, None)
    for field, value, said in (("steps", 2.5, "give the steps as a whole number."),
                               ("size", None, "give the size as a whole number."),
                               ("lr", float("nan"), "give the learning rate as a number, such as 0.0001."),
                               ("what", "gan", "choose what to train: VQGAN or Prior over a VQGAN.")):
        with pytest.raises(GeneratorError, match=f"^{re.escape(said)}$"):
            checked_form(page, {**form, field: value}, None)


def test_unreadable_uploads_are_left_out_with_a_notice(studio: Studio, uploads, trained, tmp_path: Path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is no PNG")
    with pytest.raises(GeneratorError, match="^none of the uploads can be read as an image; upload PNG, JPEG or WebP "
                                             "images.$"):
        list(train_job(studio, TrainForm(images=(str(broken),), steps=2, **FAST), _visitor(studio, "visitor-d")))
    updates = list(train_job(studio, TrainForm(images=(*uploads[:4], str(broken)), steps=2, name="four", **FAST),
                             _visitor(studio, "visitor-d")))
    assert updates[0].notice == "1 of 5 uploads cannot be read as images and were left out: broken.png."
    assert updates[-1].status.startswith("Done: the VQGAN four trained to step 2")
    assert len(list((studio.outputs_dir / ".train-uploads").glob("*/four/*"))) == 4


def test_uploads_no_run_trains_on_are_removed_once_stale_and_a_run_s_own_stay(studio: Studio, uploads, trained,
                                                                           tmp_path: Path):
    root = studio.outputs_dir / ".train-uploads"
    (kept,) = [folder for folder in root.iterdir() if (folder / "my-vqgan").is_dir()]  # the trained run's
    orphan, fresh = root / "20200101-000000-deadbeef", root / "29990101-000000-feedface"
    for folder in (orphan, fresh):
        (folder / "lost").mkdir(parents=True)
        (folder / "lost" / "00000.png").write_bytes(b"not looked at")
    old = time.time() - 2 * UPLOADS_GRACE
    for folder in (orphan, kept):
        os.utime(folder, (old, old))
    session = _visitor(studio, "visitor-c")
    updates = list(train_job(studio, TrainForm(images=uploads, steps=1, name="sweeper", **FAST), session))
    assert updates[-1].status.startswith("Done: the VQGAN sweeper")
    assert not orphan.exists()  # stale, and no run trains on it
    assert fresh.is_dir() and kept.is_dir()  # too new to tell; a run's own (resume reads it)
    assert [f for f in root.iterdir() if (f / "sweeper").is_dir()]  # the new run's uploads
    assert sweep_uploads(studio.outputs_dir, grace=0) == [fresh]
