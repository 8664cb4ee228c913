"""One owner of models: a web UI session, a command-line run and a batch worker each load every
model at most once (the pipelines and the Upscale tab share them), and ``.to()`` moves all of
them, upscalers and priors included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator import workbench as workbench_module
from generator.config import SampleConfig, UpscaleConfig
from generator.workbench import Workbench
from tests.factories import tiny_run_config
from tests.prior_factories import save_tiny_prior
from tests.upscaler_factories import compact_state, save_upscaler


@pytest.fixture
def upscaler_file(tmp_path: Path) -> Path:
    return save_upscaler(compact_state(seed=3), tmp_path / "tiny_x2.pth")


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every load the workbench makes, by kind: (the name loaded, ...)."""
    loads: dict[str, list] = {"vqgan": [], "clip": [], "prior": [], "upscaler": []}
    for kind, function in (("vqgan", "load_vqgan_by_name"), ("clip", "load_clip"), ("prior", "load_prior_by_name"),
                           ("upscaler", "load_upscaler")):
        real = getattr(workbench_module, function)

        def spy(*args, _real=real, _kind=kind, **kwargs):
            loads[_kind].append(args[0])
            return _real(*args, **kwargs)

        monkeypatch.setattr(workbench_module, function, spy)
    return loads


def _all_tensors(bench: Workbench) -> list[torch.Tensor]:
    tensors = []
    for model in bench.models:
        model = model[1] if isinstance(model, tuple) else model
        if hasattr(model, "descriptor"):  # an upscaler
            modules = [model.descriptor.model]
        elif hasattr(model, "tokenizer"):  # a CLIP
            modules = [model.model]
        else:  # a prior (its GPT and VQGAN), or a VQGAN
            modules = [model.gpt, model.vqgan] if hasattr(model, "gpt") else [model]
        tensors += [t for module in modules for t in (*module.parameters(), *module.buffers())]
    return tensors


def test_a_ui_session_that_generates_upscales_and_samples_loads_each_model_once(
        tiny_files, upscaler_file: Path, counting: dict[str, list], tmp_path: Path) -> None:
    from generator.webui.jobs import sample_job, text_to_image_job, upscale_job
    from generator.webui.studio import Studio

    prior = save_tiny_prior(tmp_path / "prior", "sos")
    studio = Studio(outputs_dir=tmp_path / "out", models=tiny_files.models(), device="cpu")
    session = studio.session()
    upscale = {"upscale": 2.0, "upscale_model": str(upscaler_file), "upscale_tile": 0}
    for seed in (1, 2):  # two runs, each upscaling its result
        list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=1, seed=seed, upscale=upscale), session))
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((12, 10, 3), dtype=np.uint8)).save(image)
    list(upscale_job(studio, str(image), UpscaleConfig(**upscale), session))  # the Upscale tab
    sample = SampleConfig(model=str(prior.checkpoint), transformer_config=str(prior.config), n=1, batch_size=1,
                          size=(32, 32), seed=3, upscale=UpscaleConfig(**upscale))
    list(sample_job(studio, sample, session))
    list(text_to_image_job(studio, tiny_run_config(tiny_files, steps=1, seed=3), session))  # back to text to image
    assert counting["vqgan"] == [str(tiny_files.vqgan)] and counting["clip"] == [str(tiny_files.clip_config)]
    assert counting["upscaler"] == [str(upscaler_file)]  # generate, the Upscale tab and sample share one
    assert counting["prior"] == [str(prior.checkpoint)]
    assert studio.upscaler(str(upscaler_file)) is studio.text_to_image.bench.upscaler(str(upscaler_file))
    assert studio.sampler.bench is studio.text_to_image.bench is studio.bench


def test_a_command_line_run_loads_each_model_once(tiny_files, upscaler_file: Path, counting: dict[str, list],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from generator.cli.main import main

    benches: list[Workbench] = []
    real = workbench_module.Workbench.__init__

    def recording(self, *args, **kwargs):
        real(self, *args, **kwargs)
        benches.append(self)

    monkeypatch.setattr(workbench_module.Workbench, "__init__", recording)
    args = ["city", *tiny_files.cli_args(), "--size", "16", "16", "--steps", "1", "--cutn", "2", "-n", "3",
            "--upscale", "2", "--upscale-model", str(upscaler_file), "--upscale-tile", "0", "--device", "cpu",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert len(benches) == 1  # one owner for the run
    assert {kind: len(names) for kind, names in counting.items()} == {"vqgan": 1, "clip": 1, "prior": 0, "upscaler": 1}


def test_a_batch_worker_loads_each_model_once_and_lets_them_go_when_jobs_ask_for_others(
        tiny_files, upscaler_file: Path, counting: dict[str, list], tmp_path: Path) -> None:
    from generator.batch.jobs import Job
    from generator.batch.work import Worker
    from tests.factories import save_tiny_vqgan

    worker = Worker(device="cpu")
    upscale = {"upscale": 2.0, "upscale_model": str(upscaler_file), "upscale_tile": 0}
    jobs = [Job(f"{i}.0", tiny_run_config(tiny_files, steps=1, seed=i, upscale=upscale), f"f{i}", f"line {i}")
            for i in range(3)]
    for job in jobs:
        (result,) = worker.run([job])
        assert result.error is None
    assert worker.loads == 1 and {kind: len(names) for kind, names in counting.items()} == \
        {"vqgan": 1, "clip": 1, "prior": 0, "upscaler": 1}
    other_vqgan, other_yaml, _ = save_tiny_vqgan(tmp_path, name="other_vqgan", seed=4)
    models = tiny_run_config(tiny_files).models.__class__(vqgan=str(other_vqgan), vqgan_config=str(other_yaml),
                                                          clip_models=tiny_run_config(tiny_files).models.clip_models)
    (result,) = worker.run([Job("9.0", tiny_run_config(tiny_files, steps=1, seed=9).replace(models=models), "g", "x")])
    assert result.error is None and counting["vqgan"] == [str(tiny_files.vqgan), str(other_vqgan)]
    held = worker._bench.models
    assert sum(1 for model in held if hasattr(model, "codebook")) == 1  # the first VQGAN was let go, once


def test_to_moves_every_model_the_workbench_holds(tiny_files, upscaler_file: Path, tmp_path: Path) -> None:
    prior = save_tiny_prior(tmp_path / "prior", "sos")
    bench = Workbench("cpu")
    bench.vqgan(str(tiny_files.vqgan), str(tiny_files.vqgan_config))
    bench.clip(str(tiny_files.clip_config), str(tiny_files.clip_weights))
    bench.prior(str(prior.checkpoint), str(prior.config))
    bench.upscaler(str(upscaler_file))
    assert len(bench.models) == 4
    bench.to("meta")  # a device every test machine has
    tensors = _all_tensors(bench)
    assert tensors and all(tensor.device.type == "meta" for tensor in tensors)
    assert bench.device.type == "meta"
    assert bench.release() == 4 and bench.models == []
