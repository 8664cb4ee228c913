"""Load a Taming Transformers prior (``Net2NetTransformer`` checkpoint + project yaml).

A checkpoint holds ``transformer.*`` (the GPT), ``first_stage_model.*`` (its VQGAN) and, for
segmentation and depth models, ``cond_stage_model.*`` (the VQGAN that encodes the condition).
The project yaml names the conditioning: a start token (unconditional FFHQ, CelebA-HQ), a
class label (ImageNet cIN), image coordinates (FacesHQ), or a VQGAN-encoded segmentation or
depth map (S-FLCKR, COCO, ADE20k, D-RIN). Loading uses the same safe reader as everything
else and never runs code from the file.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from generator.decoder.loader import (
    EXTRA_NAMES,
    TRAINING_ONLY_PREFIXES,
    find_config_file,
    infer_vqgan_config,
    read_yaml,
    vqgan_config_from_mapping,
    vqgan_from_state,
)
from generator.decoder.protocol import Decoder
from generator.errors import CheckpointError, ConfigError
from generator.weights import store
from generator.weights.checkpoints import Checkpoint, open_checkpoint
from generator.weights.download import ProgressCallback
from generator.weights.state_dicts import StateDict, build_strict, state_dict_from, with_prefix, without
from models.gpt import GPT, GPTConfig
from models.vqgan import VQGANConfig

logger = logging.getLogger(__name__)

CONDITIONINGS = ("sos", "class", "coord", "segmentation", "depth")
SPATIAL = ("coord", "segmentation", "depth")
_PREFIXES = ("transformer.", "first_stage_model.", "cond_stage_model.", "permuter.")


@dataclass(frozen=True)
class PriorSpec:
    """Everything about a prior that is not a tensor.

    Attributes:
        gpt: the transformer's architecture.
        conditioning: one of ``sos``, ``class``, ``coord``, ``segmentation``, ``depth``.
        first_stage: the VQGAN's architecture (None: inferred from the tensors).
        cond_stage: the condition VQGAN's architecture (segmentation and depth).
        sos_token: the start token of unconditional models.
        n_classes: classes of class-conditional models.
        coord_levels, coord_down_factor: CoordStage's quantisation levels and cell size.
    """

    gpt: GPTConfig
    conditioning: str
    first_stage: VQGANConfig | None = None
    cond_stage: VQGANConfig | None = None
    sos_token: int = 0
    n_classes: int = 1000
    coord_levels: int = 1024
    coord_down_factor: int = 16

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ConfigError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, not {self.conditioning!r}.")

    @property
    def window_tokens(self) -> int:
        """Image tokens in one training window: what fits beside the condition in a block."""
        if self.conditioning in SPATIAL:
            return (self.gpt.block_size + 1) // 2
        return self.gpt.block_size

    @property
    def window(self) -> tuple[int, int]:
        """(rows, cols) of the square training window (16x16 for every released model)."""
        side = math.isqrt(self.window_tokens)
        if side * side != self.window_tokens:
            raise ConfigError(
                f"a block size of {self.gpt.block_size} does not give a square window of image tokens; "
                "this tool samples square-window priors only."
            )
        return (side, side)


@dataclass
class Prior:
    """A loaded prior: the GPT, the VQGAN whose codes it predicts, and its conditioning."""

    gpt: GPT
    vqgan: Decoder
    spec: PriorSpec
    cond_vqgan: Decoder | None = None
    source: str = "in-memory prior"

    def to(self, device: str | torch.device) -> Prior:
        self.gpt.to(device)
        self.vqgan.to(device)
        if self.cond_vqgan is not None:
            self.cond_vqgan.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.gpt.pos_emb.device


def _gpt_config(params: Mapping[str, Any], source: str) -> GPTConfig:
    known = {"vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_unmasked"}
    try:
        return GPTConfig(**{k: int(v) for k, v in params.items() if k in known})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source} has no usable transformer_config ({error}); "
                          "give the prior's project yaml.") from None


def prior_spec_from_yaml(data: Mapping[str, Any], *, source: str) -> PriorSpec:
    """Read a ``Net2NetTransformer`` project yaml (parsed)."""
    model = data.get("model", data)
    params = model.get("params", {})
    if "transformer_config" not in params:
        raise ConfigError(f"{source} is not a transformer project yaml (no transformer_config); give the prior's yaml.")
    permuter = str((params.get("permuter_config") or {}).get("target", "Identity"))
    if not permuter.endswith("Identity"):
        raise ConfigError(f"{source} uses the {permuter.rsplit('.', 1)[-1]} token order, which is not supported.")
    gpt = _gpt_config(params["transformer_config"].get("params", {}), source)
    first_stage = vqgan_config_from_mapping(params["first_stage_config"], source=source) \
        if "first_stage_config" in params else None
    cond = params.get("cond_stage_config")
    target = str(cond.get("target", "")) if isinstance(cond, Mapping) else str(cond)
    cond_params = cond.get("params", {}) if isinstance(cond, Mapping) else {}
    common: dict[str, Any] = dict(gpt=gpt, first_stage=first_stage, sos_token=int(params.get("sos_token", 0)))
    if cond == "__is_unconditional__" or params.get("unconditional") or target.endswith("SOSProvider"):
        return PriorSpec(conditioning="sos", **common)
    if target.endswith("Labelator"):
        return PriorSpec(conditioning="class", n_classes=int(cond_params.get("n_classes", 1000)), **common)
    if target.endswith("CoordStage"):
        return PriorSpec(conditioning="coord", coord_levels=int(cond_params.get("n_embed", 1024)),
                         coord_down_factor=int(cond_params.get("down_factor", 16)), **common)
    key = str(params.get("cond_stage_key", ""))
    if target.endswith(("VQModel", "GumbelVQ")) and key in ("segmentation", "depth"):
        cond_stage = vqgan_config_from_mapping(cond, source=source)
        return PriorSpec(conditioning=key, cond_stage=cond_stage, **common)
    raise ConfigError(
        f"{source} conditions on {key or target or cond!r}, which this tool does not sample; supported are "
        "start-token, class, coordinate, segmentation and depth priors."
    )


def _split(state: StateDict, source: str) -> dict[str, StateDict]:
    stray = sorted(k for k in state if not k.startswith(_PREFIXES))
    if stray:
        raise CheckpointError(
            f"{source} is not a Taming transformer checkpoint (it holds {stray[0]}, outside transformer.*, "
            "first_stage_model.* and cond_stage_model.*); give a transformer's last.ckpt."
        )
    parts = {prefix.rstrip("."): with_prefix(state, prefix) for prefix in _PREFIXES}
    if not parts["transformer"]:
        raise CheckpointError(f"{source} holds no transformer.* tensors; it is not a transformer prior checkpoint.")
    if parts["permuter"]:
        raise CheckpointError(f"{source} uses a permuted token order, which is not supported.")
    return parts


def _check_pairing(spec: PriorSpec, vqgan: Decoder, source: str) -> None:
    if spec.gpt.vocab_size != vqgan.n_codes:
        raise CheckpointError(
            f"{source}: the transformer predicts {spec.gpt.vocab_size} codes but its VQGAN has "
            f"{vqgan.n_codes}, so they do not belong together; give the VQGAN config this "
            "transformer was trained with."
        )
    if spec.conditioning == "sos" and not 0 <= spec.sos_token < spec.gpt.vocab_size:
        raise CheckpointError(f"{source}: sos_token {spec.sos_token} is outside the vocabulary.")


def load_prior(
    checkpoint: str | Path,
    config: str | Path | Mapping[str, Any] | None = None,
    *,
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike[str] | None = None,
) -> Prior:
    """Load a transformer prior with its VQGAN (and condition VQGAN), frozen, in eval mode.
    Shapes are checked against the yaml before any tensor is read.

    Args:
        checkpoint: the ``last.ckpt`` of a Taming transformer (or a state dict file).
        config: its project yaml (path or parsed); default: a yaml beside the checkpoint or
            the ``configs/*-project.yaml`` of its log folder.
        device: where the models go.
        weights_dir: whose store of safe copies a pickled checkpoint goes through.

    Raises:
        CheckpointError: unreadable, unsafe, or a transformer/VQGAN that do not fit each other.
        ConfigError: an unsupported conditioning or a yaml that is not a transformer's.
    """
    checkpoint = Path(checkpoint)
    source = checkpoint.name
    opened = open_checkpoint(checkpoint, weights_dir=weights_dir)
    try:
        return _load_prior(opened, checkpoint, config, source).to(device)
    finally:
        opened.close()


def _load_prior(opened: Checkpoint, checkpoint: Path, config: Any, source: str) -> Prior:
    state = without(state_dict_from(opened, source=source), prefixes=TRAINING_ONLY_PREFIXES)
    parts = _split(state, source)
    if config is None:
        config = find_config_file(checkpoint)
    if isinstance(config, (str, Path)):
        spec = prior_spec_from_yaml(read_yaml(config), source=Path(config).name)
    elif isinstance(config, Mapping):
        spec = prior_spec_from_yaml(config, source=source)
    else:
        raise ConfigError(f"{source} needs its project yaml (--transformer-config); none was found beside it.")
    first = spec.first_stage or infer_vqgan_config(parts["first_stage_model"], source=source)
    vqgan = vqgan_from_state(without(parts["first_stage_model"], names=EXTRA_NAMES), first, source=source,
                             label="its yaml", what="the prior's VQGAN", read=opened.read)
    _check_pairing(spec, vqgan, source)
    gpt = build_strict(lambda: GPT(spec.gpt), parts["transformer"], source=source, what="the transformer",
                       likely_cause=_gpt_cause(spec.gpt, parts["transformer"]),
                       remedy="pass the project yaml that came with this checkpoint", read=opened.read)
    gpt.requires_grad_(False).eval()
    cond_vqgan = None
    if spec.conditioning in ("segmentation", "depth"):
        if spec.cond_stage is None or not parts["cond_stage_model"]:
            raise CheckpointError(f"{source} has no condition VQGAN (cond_stage_model.*) "
                                  f"for its {spec.conditioning} maps.")
        cond_vqgan = vqgan_from_state(without(parts["cond_stage_model"], names=EXTRA_NAMES), spec.cond_stage,
                                      source=source, label="its yaml", what="the condition VQGAN", read=opened.read)
    prior = Prior(gpt=gpt, vqgan=vqgan, spec=spec, cond_vqgan=cond_vqgan, source=str(checkpoint))
    spec.window  # noqa: B018 - validates that the window is square before any sampling
    return prior


def _gpt_cause(given: GPTConfig, state: Mapping[str, torch.Tensor]) -> str | None:
    """'this checkpoint was trained with n_layer=24; its yaml says 12', from tensor shapes."""
    try:
        trained = {
            "vocab_size": state["tok_emb.weight"].shape[0], "n_embd": state["tok_emb.weight"].shape[1],
            "block_size": state["pos_emb"].shape[1],
            "n_layer": 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
        }
    except (KeyError, ValueError, IndexError):
        return None
    differ = [name for name, value in trained.items() if getattr(given, name) != value]
    if not differ:
        return None
    return ("this checkpoint was trained with " + ", ".join(f"{n}={trained[n]}" for n in differ)
            + "; its yaml says " + ", ".join(f"{n}={getattr(given, n)}" for n in differ))


def transformer_registry_name(model: str) -> str:
    """``ffhq`` -> ``ffhq_transformer`` where that is a registry entry; anything else as is."""
    if model not in store.REGISTRY and f"{model}_transformer" in store.REGISTRY:
        return f"{model}_transformer"
    return model


def load_prior_by_name(model: str, transformer_config: str | None = None, *, device: torch.device,
                       weights_dir: str | os.PathLike[str] | None = None, offline: bool | None = None,
                       progress: ProgressCallback | None = None) -> tuple[str, Prior]:
    """(registry name or path, loaded prior) for ``ffhq``, ``ffhq_transformer`` or a checkpoint path."""
    name = transformer_registry_name(model)
    path = store.resolve(name, kind="transformer", weights_dir=weights_dir, offline=offline, progress=progress)
    return name, load_prior(path, transformer_config, device=device, weights_dir=weights_dir)
