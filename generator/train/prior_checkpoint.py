"""A trained prior written in the official Taming Transformers formats.

Two files, as a Taming log folder holds them: a Lightning-style ``.ckpt`` (a dict with
``state_dict``, ``global_step``, ``epoch`` and ``pytorch-lightning_version``) whose state dict
holds ``transformer.*`` (the GPT, attention mask buffers included) and ``first_stage_model.*``
(the VQGAN whose codes it predicts), and the ``Net2NetTransformer`` project ``.yaml`` beside it
with the same stem. The two conditionings trained here have no weights of their own (Taming's
``SOSProvider`` for a start token, ``Labelator`` for a class), so there is no
``cond_stage_model.*``. :func:`generator.sample.loader.load_prior` reads the pair strictly, and
so does Taming's own ``Net2NetTransformer`` built from the yaml. :func:`register_prior` copies the
pair into the weights folder, where the CLI and the web UI's menus list local priors.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from generator.io.atomic_files import output_error, replace_bytes_atomic
from generator.train.vqgan_checkpoint import free_name, upstream_ddconfig
from generator.weights import store
from models.gpt import GPT, GPTConfig
from models.vqgan import VQGAN, VQGANConfig

LIGHTNING_VERSION = "1.0.8"  # the version Taming's released checkpoints were written with
BASE_LEARNING_RATE = 4.5e-6  # Taming's transformer configs; recorded, not used by any loader
CONDITIONINGS = ("sos", "class")


def vqgan_model_config(config: VQGANConfig) -> dict[str, Any]:
    """The ``model`` mapping of a VQGAN's upstream ``model.yaml`` (``target`` + ``params``), with
    Taming's ``DummyLoss``, as a transformer's ``first_stage_config`` holds it."""
    params: dict[str, Any] = {"embed_dim": config.embed_dim, "n_embed": config.n_embed,
                              "ddconfig": upstream_ddconfig(config),
                              "lossconfig": {"target": "taming.modules.losses.DummyLoss"}}
    if config.quantizer == "gumbel":
        params["kl_weight"] = 1.0e-8
        params["temperature_scheduler_config"] = {
            "target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
            "params": {"warm_up_steps": 0, "max_decay_steps": 1000001, "lr_start": 0.9, "lr_max": 0.9,
                       "lr_min": 1.0e-06}}
        return {"target": "taming.models.vqgan.GumbelVQ", "params": params}
    return {"target": "taming.models.vqgan.VQModel", "params": params}


def prior_project(gpt: GPTConfig, vqgan: VQGANConfig, conditioning: str, *, n_classes: int = 0,
                  sos_token: int = 0) -> dict[str, Any]:
    """The ``Net2NetTransformer`` project yaml (parsed) of a prior.

    Args:
        gpt: the transformer's architecture.
        vqgan: the first stage's architecture.
        conditioning: ``sos`` (unconditional, one start token) or ``class`` (the class id as
            the single condition token, as ImageNet cIN).
        n_classes: classes of a class-conditional prior.
        sos_token: the start token of an unconditional prior.
    """
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, not {conditioning!r}")
    params: dict[str, Any] = {
        "first_stage_key": "image",
        "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT", "params": gpt.to_dict()},
        "first_stage_config": vqgan_model_config(vqgan),
    }
    if conditioning == "sos":
        params.update(cond_stage_key="image", unconditional=True, sos_token=sos_token,
                      cond_stage_config="__is_unconditional__")
    else:
        params.update(cond_stage_key="class_label",
                      cond_stage_config={"target": "taming.modules.util.Labelator",
                                         "params": {"n_classes": n_classes}})
    return {"model": {"base_learning_rate": BASE_LEARNING_RATE,
                      "target": "taming.models.cond_transformer.Net2NetTransformer", "params": params}}


def prior_state_dict(gpt: GPT, vqgan: VQGAN) -> dict[str, torch.Tensor]:
    """``transformer.*`` + ``first_stage_model.*``: float32 CPU copies, each tensor its own storage."""
    state = {f"transformer.{key}": value for key, value in gpt.state_dict().items()}
    state.update({f"first_stage_model.{key}": value for key, value in vqgan.state_dict().items()})
    return {key: value.detach().to("cpu", torch.float32 if value.is_floating_point() else value.dtype).clone()
            for key, value in state.items()}


def save_prior(gpt: GPT, vqgan: VQGAN, checkpoint: Path, *, conditioning: str, n_classes: int = 0,
               sos_token: int = 0, step: int = 0, epoch: int = 0) -> tuple[Path, Path]:
    """Write ``checkpoint`` (``.ckpt``) and the project yaml beside it (same stem, ``.yaml``),
    each atomically, replacing earlier versions; returns both paths.

    Raises:
        OutputError: the folder is not writable or the disk is full.
    """
    checkpoint = Path(checkpoint)
    buffer = io.BytesIO()
    torch.save({"epoch": epoch, "global_step": step, "pytorch-lightning_version": LIGHTNING_VERSION,
                "state_dict": prior_state_dict(gpt, vqgan)}, buffer)
    project = prior_project(gpt.config, vqgan.config, conditioning, n_classes=n_classes, sos_token=sos_token)
    config = checkpoint.with_suffix(".yaml")
    replace_bytes_atomic(checkpoint, buffer.getvalue())
    replace_bytes_atomic(config, yaml.safe_dump(project, sort_keys=False).encode("utf-8"))
    return checkpoint, config


def register_prior(checkpoint: Path, config: Path, name: str, *, weights_dir: str | os.PathLike[str] | None = None,
                   replace: bool = False) -> Path:
    """Copy a prior's ``.ckpt`` and ``.yaml`` into the weights folder as ``<name>.ckpt`` and
    ``<name>.yaml`` (the first of ``name``, ``name-2``, ... not taken there or by a registry file,
    unless ``replace``: then ``name`` itself, this run's earlier copy); returns the checkpoint's copy.

    Raises:
        OutputError: the weights folder is not writable or the disk is full.
    """
    root = store.weights_dir(weights_dir)
    chosen = name if replace else free_name(name, weights_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(error, root / f"{chosen}.ckpt", root) from error
    for source, target in ((config, root / f"{chosen}.yaml"), (checkpoint, root / f"{chosen}.ckpt")):
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, target)
        except OSError as error:
            raise output_error(error, target, root) from error
        finally:
            with contextlib.suppress(OSError):
                partial.unlink()
    return root / f"{chosen}.ckpt"
