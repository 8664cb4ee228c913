"""The Sample tab's mask: the job honours it (pixels outside a hard mask are the image's own),
and the form carries it to the config and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from generator.config import SampleConfig
from generator.sample.loader import load_prior
from generator.sample.pipeline import Sampler
from generator.webui.forms import from_form, to_form
from generator.webui.jobs import sample_job
from generator.webui.studio import Studio
from tests.prior_factories import save_tiny_prior


def test_the_sample_job_resamples_only_under_the_mask(tmp_path: Path) -> None:
    prior = save_tiny_prior(tmp_path / "prior", "sos")
    studio = Studio(outputs_dir=tmp_path / "out", device="cpu",
                    sampler=Sampler(load_prior(prior.checkpoint), model=str(prior.checkpoint)))
    photo = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    inside = np.zeros((32, 32), dtype=bool)
    inside[8:20, 10:26] = True
    Image.fromarray(inside.astype(np.uint8) * 255, mode="L").save(tmp_path / "mask.png")
    form = {**to_form(SampleConfig()), "model": str(prior.checkpoint), "n": 2, "batch_size": 2, "seed": 0,
            "complete": str(tmp_path / "photo.png"), "mask": str(tmp_path / "mask.png"), "mask_blur": 0}
    config = from_form(SampleConfig, form)
    assert config.mask == str(tmp_path / "mask.png") and to_form(config)["mask"] == config.mask
    final = list(sample_job(studio, config, studio.session()))[-1]
    assert [Path(p).name for p in final.results] == ["sample-000.png", "sample-001.png"]
    for path in final.results:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(pixels[~inside], photo[~inside])
        assert (pixels[inside] != photo[inside]).any(axis=-1).mean() > 0.5


def test_an_empty_mask_widget_is_no_mask() -> None:
    values = to_form(SampleConfig())
    assert values["mask"] is None and values["mask_blur"] == 0.0
    assert from_form(SampleConfig, {**values, "mask": None}).mask is None
