"""The one owner of a process's models: the workbench.

A command-line run, a web UI server and each batch or Ray worker make one
:class:`Workbench`. It holds the weights context (folder, offline, download progress) and the
device, and it loads every model the pipelines ask for (VQGANs, CLIP members, priors,
upscalers) the first time, keeps it, hands the same object to every pipeline that asks again,
moves all of them together (:meth:`Workbench.to`) and lets go of them once
(:meth:`Workbench.release`). Pipelines never load models themselves.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from generator.animate.raft import RaftFlow, load_raft
from generator.decoder.loader import load_vqgan_by_name
from generator.decoder.protocol import Decoder
from generator.devices import pick_device, release_memory
from generator.sample.loader import Prior, load_prior_by_name
from generator.text_to_image.clip import ClipModel
from generator.text_to_image.loader import load_clip
from generator.upscale.loader import Upscaler, load_upscaler, upscaler_registry_name
from generator.weights.download import ProgressCallback

logger = logging.getLogger(__name__)

Key = tuple[Any, ...]


class Workbench:
    """Loads each model once, keeps it, moves and releases all of them together.

    Args:
        device: where models go (``auto``/None: CUDA if available, else CPU).
        weights_dir: the weights folder (``--weights-dir``); None: the default.
        offline: forbid downloads (None: ``$GENERATOR_OFFLINE``).
        progress: download progress callback (None: a bar on stderr).

    Attributes:
        loads: how many times each kind of model was loaded (``vqgan``, ``clip``, ``prior``,
            ``upscaler``): a model asked for again is not loaded again.
        load_seconds: time spent loading, in total.
    """

    def __init__(self, device: str | torch.device | None = None, *,
                 weights_dir: str | os.PathLike[str] | None = None, offline: bool | None = None,
                 progress: ProgressCallback | None = None):
        self.device = pick_device(device)
        self.weights_dir = weights_dir
        self.offline = offline
        self.progress = progress
        self.loads: Counter[str] = Counter()
        self.load_seconds = 0.0
        self._models: dict[Key, Any] = {}

    def __repr__(self) -> str:
        return f"Workbench({self.device}, {len(self._models)} models)"

    @property
    def _weights(self) -> dict[str, Any]:
        return {"weights_dir": self.weights_dir, "offline": self.offline}

    def _get(self, key: Key, load: Callable[[], Any]) -> Any:
        if key not in self._models:
            started = time.perf_counter()
            self._models[key] = load()
            self.loads[key[0]] += 1
            self.load_seconds += time.perf_counter() - started
        return self._models[key]

    def vqgan(self, name: str, config: str | os.PathLike[str] | None = None) -> Decoder:
        """The VQGAN ``name`` (registry name or checkpoint) with its yaml ``config``, loaded once
        (channels-last on CUDA, where its convolutions are faster)."""
        def load() -> Decoder:
            vqgan = load_vqgan_by_name(name, config, device=self.device, progress=self.progress, **self._weights)
            return vqgan.to(memory_format=torch.channels_last) if self.device.type == "cuda" else vqgan

        return self._get(("vqgan", name, _plain(config)), load)

    def clip(self, model: str, pretrained: str | None) -> ClipModel:
        """The CLIP ``model`` with weights ``pretrained`` (see :func:`load_clip`), loaded once."""
        return self._get(("clip", model, pretrained), lambda: load_clip(model, pretrained, device=self.device,
                                                                        progress=self.progress, **self._weights))

    def reload_clip(self, model: str, pretrained: str | None) -> ClipModel:
        """The CLIP read again from its file (its float32 weights, after a run rounded them)."""
        self._models.pop(("clip", model, pretrained), None)
        return self.clip(model, pretrained)

    def prior(self, name: str, config: str | os.PathLike[str] | None = None) -> tuple[str, Prior]:
        """(registry name or path, the prior) for ``ffhq``, ``ffhq_transformer`` or a checkpoint, loaded once."""
        return self._get(("prior", name, _plain(config)), lambda: load_prior_by_name(
            name, _plain(config), device=self.device, progress=self.progress, **self._weights))

    def upscaler(self, name: str, denoise: float | None = None) -> Upscaler:
        """The upscaler ``name`` (registry name, official file name or path), loaded once per denoise strength."""
        return self._get(("upscaler", upscaler_registry_name(name), denoise), lambda: load_upscaler(
            name, denoise=denoise, device=self.device, progress=self.progress, **self._weights))

    def flow_network(self, name: str) -> RaftFlow:
        """The RAFT optical-flow network ``name`` (registry name or path), loaded once."""
        return self._get(("flow", name), lambda: load_raft(name, device=self.device, progress=self.progress,
                                                           **self._weights))

    @property
    def models(self) -> list[Any]:
        """Every model held, in the order they were loaded."""
        return list(self._models.values())

    @property
    def upscalers(self) -> list[Upscaler]:
        """The upscalers held (small, and shared by every mode that upscales)."""
        return [model for model in self._models.values() if isinstance(model, Upscaler)]

    def holds(self, model: Any) -> bool:
        """Whether ``model`` is one of this workbench's."""
        return any(held is model for held in self._models.values())

    def to(self, device: str | torch.device) -> Workbench:
        """Move every model held to ``device`` (later loads go there too); returns self."""
        self.device = torch.device(device)
        for model in self._models.values():
            _move(model, self.device)
        return self

    def release(self, keep: Iterable[Any] = ()) -> int:
        """Let go of every model but those in ``keep`` (and the parts of a kept prior), then give
        the memory back once; returns how many were let go."""
        kept = {id(model) for model in keep}
        for model in keep:
            if isinstance(model, tuple):  # a prior as (name, prior)
                kept.update(id(part) for part in model)
            if isinstance(model, Prior):
                kept.update((id(model.vqgan), id(model.cond_vqgan)))
        dropped = [key for key, model in self._models.items()
                   if id(model) not in kept and not (isinstance(model, tuple) and id(model[1]) in kept)]
        for key in dropped:
            logger.debug("releasing %s", key)
            del self._models[key]
        if dropped:
            release_memory(self.device)
        return len(dropped)


def _plain(config: Any) -> Any:
    """A config argument as a cache key part: paths as strings, other values as they are."""
    return str(config) if isinstance(config, Path) else config


def _move(model: Any, device: torch.device) -> None:
    if isinstance(model, tuple):  # (name, prior)
        model = model[1]
    if isinstance(model, Upscaler):
        model.descriptor.to(device)
    else:
        model.to(device)
