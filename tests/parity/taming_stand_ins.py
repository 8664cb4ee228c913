"""What the ORIGINAL taming-transformers code needs to import and build on current torch without
downloads, for the throwaway-install scripts (goldens, ``bench/train.py``): Lightning (only a
base class here), ``taming.main``'s ``instantiate_from_config``, and pretrained VGG/LPIPS weights
(random ones instead)."""

from __future__ import annotations

import importlib
import sys
import types

import torch


def install() -> None:
    """Put the stand-ins in place (before importing ``taming``)."""
    lightning = types.ModuleType("pytorch_lightning")
    lightning.LightningModule = torch.nn.Module
    sys.modules["pytorch_lightning"] = lightning
    main = types.ModuleType("taming.main")

    def instantiate_from_config(config: dict):
        module, _, name = config["target"].rpartition(".")
        return getattr(importlib.import_module(module), name)(**config.get("params", {}))

    main.instantiate_from_config = instantiate_from_config
    sys.modules["taming.main"] = main
    import torchvision.models

    original = torchvision.models.vgg16
    torchvision.models.vgg16 = lambda pretrained=False, **kwargs: original(weights=None)
    from taming.modules.losses import lpips

    lpips.LPIPS.load_from_pretrained = lambda self, name="vgg_lpips": None
