"""On a GPU the web UI keeps one model set there: the text-to-image models move to the CPU
while the prior samples, and back for the next text-to-image job (not loaded again)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generator.sample.loader import Prior, load_prior
from generator.sample.pipeline import Sampler
from generator.text_to_image.pipeline import TextToImage
from generator.webui import studio as studio_module
from generator.webui.studio import Studio
from tests.prior_factories import save_tiny_prior


@pytest.fixture
def both(tiny_pipeline, tmp_path: Path) -> Studio:
    prior = save_tiny_prior(tmp_path / "prior", "sos")
    sampler = Sampler(load_prior(prior.checkpoint), model=str(prior.checkpoint))
    return Studio(outputs_dir=tmp_path / "out", text_to_image=tiny_pipeline, sampler=sampler)


def test_on_a_gpu_the_set_a_job_does_not_use_waits_on_the_cpu(both: Studio, monkeypatch) -> None:
    moves: list[tuple[str, str]] = []
    monkeypatch.setattr(TextToImage, "to", lambda self, device: moves.append(("text-to-image", str(device))) or self)
    monkeypatch.setattr(Prior, "to", lambda self, device: moves.append(("prior", str(device))) or self)
    monkeypatch.setattr(studio_module, "_free", lambda device: moves.append(("free", str(device))))
    both.device = torch.device("cuda")  # as on a GPU machine (the moves are recorded, not made)
    pipeline, sampler = both.text_to_image, both.sampler
    assert both.sampler_for(sampler.model) is sampler
    assert moves == [("text-to-image", "cpu"), ("free", "cuda"), ("prior", "cuda")]
    moves.clear()
    assert both.text_to_image_for(pipeline.models) is pipeline  # the same objects: nothing loaded again
    assert moves == [("prior", "cpu"), ("free", "cuda"), ("text-to-image", "cuda")]


def test_on_the_cpu_nothing_moves(both: Studio, monkeypatch) -> None:
    moves: list[str] = []
    monkeypatch.setattr(TextToImage, "to", lambda self, device: moves.append(str(device)) or self)
    monkeypatch.setattr(Prior, "to", lambda self, device: moves.append(str(device)) or self)
    both.sampler_for(both.sampler.model)
    both.text_to_image_for(both.text_to_image.models)
    assert set(moves) <= {"cpu"}  # at most a no-op move to where they already are


@pytest.mark.gpu
def test_on_a_real_gpu_the_idle_set_leaves_it(tiny_files, tmp_path: Path) -> None:
    prior = save_tiny_prior(tmp_path / "prior", "sos")
    studio = Studio(outputs_dir=tmp_path / "out", device="cuda",
                    text_to_image=TextToImage.from_pretrained(tiny_files.models(), device="cuda"),
                    sampler=Sampler(load_prior(prior.checkpoint, device="cuda"), model=str(prior.checkpoint)))
    studio.sampler_for(studio.sampler.model)
    assert studio.text_to_image.vqgan.codebook.device.type == "cpu"
    assert next(studio.text_to_image.clips[0].model.parameters()).device.type == "cpu"
    assert studio.sampler.prior.device.type == "cuda"
    studio.text_to_image_for(studio.text_to_image.models)
    assert studio.sampler.prior.device.type == "cpu" and studio.text_to_image.vqgan.codebook.device.type == "cuda"
