"""The public pipeline: a :class:`Generator` holds loaded models; ``run(config)`` yields events.

The pipeline never writes files. A sink (the CLI, the web UI, a script) iterates the run,
shows progress, saves previews and results; closing the run cancels it within one step.

Example:
    >>> gen = Generator.from_pretrained()                       # default VQGAN + CLIP ViT-B/32
    >>> run = gen.run(GenerationConfig(prompts="city at night", steps=200, seed=7))
    >>> for event in run:
    ...     if isinstance(event, Done):
    ...         event.images[0].save("city.png")
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from generator.config import ClipModelConfig, GenerationConfig, ModelsConfig
from generator.devices import pick_device
from generator.events import Done, Event, Notice
from generator.guidance.clip import ClipModel, load_clip
from generator.guidance.loop import run_text_to_image
from generator.prior.loader import Prior
from generator.prior.pipeline import load_prior_by_name
from generator.runs import GenerationRun, RunState
from generator.upscale.loader import UpscalerCache
from generator.upscale.tiles import finish_with_upscale
from generator.vqgan_loader import load_vqgan
from generator.weights import store
from generator.weights.download import ProgressCallback
from models.vqgan import VQGAN, VQGANConfig

logger = logging.getLogger(__name__)


class Generator:
    """Loaded models plus the runs that use them.

    Args:
        vqgan: the VQGAN whose latent is optimised.
        clips: the CLIP models of the guiding ensemble.
        prior: a transformer prior for ``init=prior`` (its VQGAN must be ``vqgan``).
        models: what these models are (registry names or files), recorded in every output
            so that it can be repeated; defaults to labels of in-memory models.
        device: where the models live (default: the VQGAN's device).
    """

    def __init__(self, vqgan: VQGAN, clips: Sequence[ClipModel], *, models: ModelsConfig | None = None,
                 device: str | torch.device | None = None, prior: Prior | None = None):
        if not clips:
            raise ValueError("a Generator needs at least one CLIP model")
        if prior is not None and prior.vqgan is not vqgan:
            raise ValueError("with a prior, the Generator's VQGAN must be the prior's own")
        self.vqgan = vqgan
        self.clips = list(clips)
        self.prior = prior
        self.device = torch.device(device) if device is not None else vqgan.codebook.device
        self.models = models or ModelsConfig(
            vqgan="in-memory VQGAN",
            clip_models=tuple(ClipModelConfig(model=clip.name, pretrained=None) for clip in self.clips),
        )
        if len(self.models.clip_models) != len(self.clips):
            raise ValueError("models.clip_models must describe each CLIP model")
        self.load_seconds = 0.0
        self.requested = self.models  # what from_pretrained was asked for (names before resolution)
        self.upscalers = UpscalerCache(self.device)

    @classmethod
    def from_pretrained(
        cls,
        models: ModelsConfig | None = None,
        *,
        device: str | torch.device | None = None,
        weights_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> Generator:
        """Load (downloading on first use) the VQGAN and CLIP models that ``models`` names.

        With ``models.prior`` the transformer is loaded too, and its own VQGAN is used (the
        recorded ``models.vqgan`` then names the transformer checkpoint).

        Raises:
            WeightsError: a file is missing (offline) or failed to download or verify.
            CheckpointError: a checkpoint is unsafe, damaged or does not fit its config.
        """
        models = requested = models or ModelsConfig()
        started = time.perf_counter()
        device = pick_device(device)
        prior = None
        if models.prior:
            name, prior = load_prior_by_name(models.prior, models.prior_config, device=device,
                                             weights_dir=weights_dir, offline=offline, progress=progress)
            models = dataclasses.replace(models, prior=name, vqgan=name, vqgan_config=models.prior_config)
            vqgan = prior.vqgan
        else:
            path = store.resolve(models.vqgan, kind="vqgan", weights_dir=weights_dir, offline=offline, progress=progress)
            vqgan_config: VQGANConfig | str | None = models.vqgan_config
            if vqgan_config is None and models.vqgan in store.REGISTRY:
                vqgan_config = VQGANConfig(**store.REGISTRY[models.vqgan].config)
            vqgan = load_vqgan(path, vqgan_config, device=device)
        if device.type == "cuda":
            vqgan = vqgan.to(memory_format=torch.channels_last)
        clips = [load_clip(spec.model, spec.pretrained, device=device, weights_dir=weights_dir,
                           offline=offline, progress=progress) for spec in models.clip_models]
        generator = cls(vqgan, clips, models=models, device=device, prior=prior)
        generator.requested = requested
        generator.upscalers = UpscalerCache(device, weights_dir, offline)
        generator.load_seconds = time.perf_counter() - started
        return generator

    def run(self, config: GenerationConfig) -> GenerationRun:
        """Start a text-to-image run. Nothing happens until the run is iterated.

        Progress comes every step, a Preview every ``output.save_every`` steps, and a final
        :class:`Done` with the image, the resolved config, the seed and timings.
        """
        state = RunState()
        return GenerationRun(self._events(config, state), state)

    def __call__(self, config: GenerationConfig) -> Done:
        """Run to the end and return the :class:`Done` event."""
        done = None
        with self.run(config) as run:
            for event in run:
                if isinstance(event, Done):
                    done = event
        assert done is not None
        return done

    def _events(self, config: GenerationConfig, state: RunState) -> Iterator[Event]:
        clip_weights, models = self._clip_weights(config)
        state.config.update(config.replace(models=models).to_dict())
        if config.models.identity not in (self.models.identity, self.requested.identity):
            yield Notice(f"the config names other models than this Generator holds; using {_describe(self.models)}.")
        for event in run_text_to_image(self.vqgan, self.clips, clip_weights, config, state, self.device, self.prior):
            if isinstance(event, Done):
                yield (yield from finish_with_upscale(event, config.upscale, self.upscalers, self.load_seconds))
            else:
                yield event

    def _clip_weights(self, config: GenerationConfig) -> tuple[list[float], ModelsConfig]:
        """Loss weights of the loaded CLIP models: the config's where it names the same models."""
        asked = config.models.clip_models
        mine = self.models.clip_models
        if [c.identity for c in asked] == [c.identity for c in mine]:
            specs = asked
        else:
            specs = mine
        return [spec.weight for spec in specs], dataclasses.replace(self.models, clip_models=tuple(specs))


def _describe(models: ModelsConfig) -> str:
    clips = ", ".join(f"{c.model}/{c.pretrained}" for c in models.clip_models)
    return f"{Path(models.vqgan).name} with {clips}"
