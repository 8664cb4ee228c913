"""Tiny Taming transformer priors saved in the official format: a Lightning ``last.ckpt`` with
``transformer.*`` (mask buffers included), ``first_stage_model.*`` and, for map-conditioned
models, ``cond_stage_model.*``, plus the ``Net2NetTransformer`` project yaml beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.gpt import GPT, GPTConfig
from tests.factories import save_lightning_checkpoint, tiny_vqgan, upstream_vqgan_yaml, write_yaml

N_CLASSES = 10
SEG_LABELS = 5


@dataclass(frozen=True)
class TinyPrior:
    checkpoint: Path
    config: Path
    gpt: GPT


def tiny_gpt_config(conditioning: str, vocab_size: int = 16) -> GPTConfig:
    """A one-layer GPT whose training window is 16x16 image tokens."""
    spatial = conditioning in ("coord", "segmentation", "depth")
    return GPTConfig(vocab_size=vocab_size, block_size=512 if spatial else 256, n_layer=1, n_head=2, n_embd=16)


def _cond_stage(conditioning: str) -> tuple[Any, str, torch.nn.Module | None]:
    if conditioning == "sos":
        return "__is_unconditional__", "image", None
    if conditioning == "class":
        return {"target": "taming.modules.util.Labelator", "params": {"n_classes": N_CLASSES}}, "class_label", None
    if conditioning == "coord":
        coord_stage = {"target": "taming.modules.misc.coord.CoordStage", "params": {"n_embed": 15, "down_factor": 2}}
        return coord_stage, "coord", None
    channels = SEG_LABELS if conditioning == "segmentation" else 1
    cond = tiny_vqgan(seed=7, in_channels=channels, out_ch=channels)
    config = upstream_vqgan_yaml(cond.config)["model"]
    config["params"]["lossconfig"] = {"target": "taming.modules.losses.DummyLoss"}
    return config, conditioning, cond


def save_tiny_prior(directory: Path, conditioning: str = "sos", *, name: str | None = None, seed: int = 0,
                    first_stage_codes: int = 16, vocab_size: int = 16) -> TinyPrior:
    """Write ``<name>.ckpt`` and ``<name>.yaml`` for a tiny prior with this conditioning."""
    directory.mkdir(parents=True, exist_ok=True)
    name = name or f"tiny_{conditioning}_transformer"
    first = tiny_vqgan(seed=seed, n_embed=first_stage_codes)
    torch.manual_seed(seed)
    gpt = GPT(tiny_gpt_config(conditioning, vocab_size)).eval()
    with torch.no_grad():
        gpt.pos_emb.normal_(0, 0.5)  # trained models have informative positions; zeros would hide bugs
    cond_config, cond_key, cond_model = _cond_stage(conditioning)
    state = {f"transformer.{k}": v for k, v in gpt.state_dict().items()}
    state.update({f"first_stage_model.{k}": v for k, v in first.state_dict().items()})
    if cond_model is not None:
        state.update({f"cond_stage_model.{k}": v for k, v in cond_model.state_dict().items()})
    checkpoint = save_lightning_checkpoint(state, directory / f"{name}.ckpt", loss_tensors=False)
    first_config = upstream_vqgan_yaml(first.config)["model"]
    first_config["params"]["lossconfig"] = {"target": "taming.modules.losses.DummyLoss"}
    project = {"model": {"base_learning_rate": 4.5e-6, "target": "taming.models.cond_transformer.Net2NetTransformer",
                         "params": {"cond_stage_key": cond_key,
                                    "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT",
                                                           "params": gpt.config.to_dict()},
                                    "first_stage_config": first_config, "cond_stage_config": cond_config}}}
    return TinyPrior(checkpoint, write_yaml(project, directory / f"{name}.yaml"), gpt)
