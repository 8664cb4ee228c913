"""Continuing a run: its latent is saved beside final.png, and ``init=latent`` starts exactly there."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.drive import RunRecord, drive
from generator.errors import ConfigError, InputError
from generator.io.latents import LATENT_FILE, read_latent
from tests.factories import tiny_run_config


def _drive(pipeline, config, out: Path, **kwargs) -> RunRecord:
    record = RunRecord("text-to-image")
    with contextlib.closing(drive(pipeline.run(config), out, record=record, **kwargs)) as events:
        for _ in events:
            pass
    return record


def test_a_continued_run_starts_from_the_parents_last_latent(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    parent = _drive(tiny_pipeline, tiny_run_config(tiny_files, steps=6), tmp_path)
    assert (parent.folder / LATENT_FILE) in parent.files
    saved = read_latent(parent.folder)
    assert saved.shape[0] == 1 and saved.dtype.is_floating_point
    seen = []
    config = tiny_run_config(tiny_files, steps=1, init={"init": "latent", "init_latent": str(parent.folder)},
                             optim={"lr": 1e-9})
    run = tiny_pipeline.run(config)
    for _event in run:
        if not seen and run.state.latent is not None:
            seen.append(run.state.latent())
    # the continued run started from the saved latent (one step of a vanishing learning rate later)
    assert np.allclose(seen[0].numpy(), saved.numpy(), atol=1e-5)
    child = _drive(tiny_pipeline, config, tmp_path, parent=parent.folder)
    assert child.folder != parent.folder
    before = np.asarray(Image.open(parent.folder / "final.png"), dtype=np.int16)
    after = np.asarray(Image.open(child.folder / "final.png"), dtype=np.int16)
    assert np.abs(before - after).max() <= 1  # the same image, decoded from the same codes


def test_a_stopped_run_saves_its_latent_too(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    record = RunRecord("text-to-image")
    events = drive(tiny_pipeline.run(tiny_run_config(tiny_files, steps=1000)), tmp_path, record=record)
    for count, _ in enumerate(events):
        if count == 5:
            break
    events.close()
    assert record.status == "stopped" and (record.folder / LATENT_FILE).is_file()


def test_latents_of_another_size_or_no_latent_get_one_sentence(tiny_pipeline, tiny_files, tmp_path: Path) -> None:
    parent = _drive(tiny_pipeline, tiny_run_config(tiny_files, steps=2), tmp_path)
    wrong = tiny_run_config(tiny_files, size=[64, 64], init={"init": "latent", "init_latent": str(parent.folder)})
    with pytest.raises(InputError, match=r"is for 32x32 images .* not 64x64"):
        list(tiny_pipeline.run(wrong))
    (tmp_path / "empty").mkdir()
    missing = tiny_run_config(tiny_files, init={"init": "latent", "init_latent": str(tmp_path / "empty")})
    with pytest.raises(InputError, match="does not exist; give a run folder"):
        list(tiny_pipeline.run(missing))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    bad = tiny_run_config(tiny_files, init={"init": "latent", "init_latent": str(tmp_path / "bad.safetensors")})
    with pytest.raises(InputError, match="is not a readable latent"):
        list(tiny_pipeline.run(bad))
    with pytest.raises(ConfigError, match="init=latent needs an init_latent"):
        tiny_run_config(tiny_files, init={"init": "latent"})
