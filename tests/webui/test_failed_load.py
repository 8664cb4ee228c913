"""A failed model load by one user never unloads the models the other users are using."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.errors import CheckpointError, GeneratorError, WeightsError
from generator.sample.loader import Prior, load_prior
from generator.sample.pipeline import Sampler
from generator.text_to_image.pipeline import TextToImage
from generator.webui import studio as studio_module
from generator.webui.jobs import text_to_image_job
from generator.webui.studio import Studio
from tests.factories import save_tiny_vqgan, tiny_run_config
from tests.prior_factories import save_tiny_prior


@pytest.fixture
def studio(tiny_files, tmp_path: Path) -> Studio:
    own = TextToImage.from_pretrained(tiny_files.models(), device="cpu")  # not the shared fixture: freed below
    return Studio(outputs_dir=tmp_path / "out", text_to_image=own)


def _final(studio: Studio, tiny_files, seed: int = 4) -> np.ndarray:
    updates = list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=2, seed=seed), studio.session()))
    from PIL import Image

    return np.asarray(Image.open(updates[-1].result))


def test_a_missing_or_broken_model_leaves_the_loaded_ones_working(studio: Studio, tiny_files, tmp_path: Path) -> None:
    before = studio.text_to_image
    expected = _final(studio, tiny_files)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint at all")
    for vqgan, error in ((str(tmp_path / "missing.ckpt"), WeightsError), (str(broken), CheckpointError)):
        with pytest.raises(error):
            studio.text_to_image_for(replace(tiny_files.models(), vqgan=vqgan, vqgan_config=None))
        assert studio.text_to_image is before
    assert np.array_equal(_final(studio, tiny_files), expected)  # the same models, still loaded, same image


def test_a_successful_load_drops_the_previous_models(studio: Studio, tiny_files, tmp_path: Path) -> None:
    gone = weakref.ref(studio.text_to_image)
    other, other_yaml, _ = save_tiny_vqgan(tmp_path, name="other", seed=1)
    loaded = studio.text_to_image_for(replace(tiny_files.models(), vqgan=str(other), vqgan_config=str(other_yaml)))
    assert studio.text_to_image is loaded and loaded.models.vqgan == str(other)
    gc.collect()
    assert gone() is None


def test_a_failed_prior_load_keeps_the_loaded_prior(tmp_path: Path) -> None:
    prior = save_tiny_prior(tmp_path / "prior", "sos")
    sampler = Sampler(load_prior(prior.checkpoint), model=str(prior.checkpoint))
    studio = Studio(outputs_dir=tmp_path / "out", device="cpu", sampler=sampler)
    with pytest.raises(GeneratorError):
        studio.sampler_for(str(tmp_path / "missing_transformer.ckpt"))
    assert studio.sampler is sampler and studio.sampler_for(sampler.model) is sampler


def test_on_a_gpu_the_old_set_waits_on_the_cpu_and_comes_back_when_the_load_fails(
        tiny_pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prior = save_tiny_prior(tmp_path / "prior", "sos")
    sampler = Sampler(load_prior(prior.checkpoint), model=str(prior.checkpoint))
    studio = Studio(outputs_dir=tmp_path / "out", text_to_image=tiny_pipeline, sampler=sampler)
    moves: list[tuple[str, str]] = []
    monkeypatch.setattr(TextToImage, "to", lambda self, device: moves.append(("text-to-image", str(device))) or self)
    monkeypatch.setattr(Prior, "to", lambda self, device: moves.append(("prior", str(device))) or self)
    monkeypatch.setattr(studio_module, "_free", lambda device: moves.append(("free", str(device))))

    def fail(*args, **kwargs):
        raise WeightsError("file x.ckpt does not exist; check the path.")

    monkeypatch.setattr(TextToImage, "from_pretrained", fail)
    monkeypatch.setattr(Sampler, "from_pretrained", fail)
    studio.device = torch.device("cuda")  # as on a GPU machine (the moves are recorded, not made)
    with pytest.raises(WeightsError, match="does not exist"):
        studio.text_to_image_for(replace(tiny_pipeline.models, vqgan="x.ckpt"))
    assert studio.text_to_image is tiny_pipeline
    assert moves == [("prior", "cpu"), ("free", "cuda"),  # the idle prior leaves the GPU, as before
                     ("text-to-image", "cpu"), ("free", "cuda"),  # the old set waits on the CPU while loading
                     ("free", "cuda"), ("text-to-image", "cuda")]  # the load failed: back on the GPU
    moves.clear()
    with pytest.raises(WeightsError):
        studio.sampler_for("x_transformer.ckpt")
    assert studio.sampler is sampler
    assert moves == [("text-to-image", "cpu"), ("free", "cuda"), ("prior", "cpu"), ("free", "cuda"),
                     ("free", "cuda"), ("prior", "cuda")]
