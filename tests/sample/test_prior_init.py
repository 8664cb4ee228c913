"""``--init prior``: the CLIP-guided latent starts from exactly the codes the prior samples for
the run's seed and sampling settings, through the API and the command line alike."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest
import torch

from generator.cli.main import main
from generator.config import ClipModelConfig, GenerationConfig, ModelsConfig
from generator.sample.loader import load_prior
from generator.sample.sampling import SamplingSettings, prior_codes
from generator.text_to_image.loop import GuidanceLoop
from generator.text_to_image.pipeline import TextToImage
from tests.prior_factories import TinyPrior, save_tiny_prior

SIZE = (32, 32)  # the tiny prior's 16x16 window at factor 2


def _result(events: Generator) -> object:
    """Drain a generator and return its return value."""
    while True:
        try:
            next(events)
        except StopIteration as stop:
            return stop.value


@pytest.fixture(scope="module")
def sos_prior(tmp_path_factory: pytest.TempPathFactory) -> TinyPrior:
    return save_tiny_prior(tmp_path_factory.mktemp("init-prior"), "sos")


def _expected(prior_files: TinyPrior, seed: int, size: tuple[int, int], settings: SamplingSettings) -> torch.Tensor:
    """The latent of the prior's sample for ``seed``, sampled here on its own."""
    prior = load_prior(prior_files.checkpoint, prior_files.config)
    grid = (size[1] // prior.vqgan.downsample_factor, size[0] // prior.vqgan.downsample_factor)
    codes = _result(prior_codes(prior, grid, settings, torch.Generator().manual_seed(seed)))
    assert isinstance(codes, torch.Tensor) and codes.shape == (1, *grid)
    assert len(torch.unique(codes)) > 4  # a real sample, not a constant grid
    return prior.vqgan.indices_to_latent(codes)


class RecordingTextToImage(TextToImage):
    """A TextToImage that keeps the latent each image starts from."""

    started: list[torch.Tensor]

    def start_image(self, loop: GuidanceLoop, config: GenerationConfig,
                    size: tuple[int, int]) -> Generator[object, None, int]:
        index = yield from super().start_image(loop, config, size)
        self.started = [*getattr(self, "started", []), loop.images[index].initial.clone()]
        return index


def _models(prior_files: TinyPrior, tiny_files) -> ModelsConfig:
    return ModelsConfig(vqgan=str(prior_files.checkpoint),
                        clip_models=(ClipModelConfig(str(tiny_files.clip_config), str(tiny_files.clip_weights)),),
                        prior=str(prior_files.checkpoint), prior_config=str(prior_files.config))


def _config(models: ModelsConfig, seed: int, **init: object) -> GenerationConfig:
    return GenerationConfig.from_dict({
        "prompts": "city at night", "size": list(SIZE), "steps": 1, "seed": seed, "cutouts": {"cutn": 2},
        "optim": {"lr": 1e-6}, "init": {"init": "prior", **init},
        "models": GenerationConfig(models=models).to_dict()["models"]})


def test_the_api_starts_from_the_prior_sample_for_the_seed(sos_prior: TinyPrior, tiny_files) -> None:
    pipeline = RecordingTextToImage.from_pretrained(_models(sos_prior, tiny_files), device="cpu")
    assert pipeline.prior is not None and pipeline.vqgan is pipeline.prior.vqgan
    settings = {"prior_temperature": 0.7, "prior_top_k": 6, "prior_top_p": 0.9}
    config = _config(pipeline.requested, seed=5, **settings)
    expected = _expected(sos_prior, 5, SIZE, SamplingSettings(temperature=0.7, top_k=6, top_p=0.9))

    loop = pipeline.new_loop(config)
    assert _result(pipeline.start_image(loop, config, SIZE)) == 0
    assert torch.equal(loop.latents(), expected)  # start_image itself

    before = len(pipeline.started)
    with pipeline.run(config) as run:  # and a whole run, which starts the same way
        events = list(run)
    assert run.state.config["init"]["init"] == "prior" and events
    assert len(pipeline.started) == before + 1 and torch.equal(pipeline.started[-1], expected)

    other = _expected(sos_prior, 6, SIZE, SamplingSettings(temperature=0.7, top_k=6, top_p=0.9))
    assert not torch.equal(other, expected)  # the seed decides the sample
    default = _expected(sos_prior, 5, SIZE, SamplingSettings(temperature=1.0, top_k=250, top_p=1.0))
    assert not torch.equal(default, expected)  # and so do the settings


def test_the_cli_starts_from_the_prior_sample_for_the_seed(sos_prior: TinyPrior, tiny_files, tmp_path: Path) -> None:
    made: list[RecordingTextToImage] = []

    def make_pipeline(models: ModelsConfig, **kwargs: object) -> TextToImage:
        made.append(RecordingTextToImage.from_workbench(models, **kwargs))
        return made[-1]

    args = ["city at night", "--prior", str(sos_prior.checkpoint), "--prior-config", str(sos_prior.config),
            "--clip-model", str(tiny_files.clip_config), str(tiny_files.clip_weights), "--size", *map(str, SIZE),
            "--steps", "1", "--cutn", "2", "--seed", "9", "--prior-top-k", "5", "--prior-temperature", "1.3",
            "--device", "cpu", "--out", str(tmp_path)]
    assert main(args, make_pipeline=make_pipeline) == 0
    (pipeline,) = made
    assert len(pipeline.started) == 1
    expected = _expected(sos_prior, 9, SIZE, SamplingSettings(temperature=1.3, top_k=5, top_p=1.0))
    assert torch.equal(pipeline.started[0], expected)
