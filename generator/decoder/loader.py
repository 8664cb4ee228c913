"""Load a VQGAN from an official Taming Transformers checkpoint, or any file in its format.

Accepted: a Lightning ``.ckpt`` (its ``state_dict``), a ``.pth``/``.bin`` state dict, a
``.safetensors`` file, and the first stage inside a Taming transformer checkpoint
(``first_stage_model.*``). The architecture comes from the upstream ``.yaml`` (read with
``yaml.safe_load``; only the model's parameters matter, never its ``target`` import strings
beyond telling a Gumbel model apart), from a :class:`VQGANConfig`, or, when neither is
given, from the tensor shapes.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from generator.errors import CheckpointError, ConfigError
from generator.weights import store
from generator.weights.checkpoints import Checkpoint, open_checkpoint
from generator.weights.download import ProgressCallback
from generator.weights.state_dicts import StateDict, build_strict, state_dict_from, with_prefix, without
from models.vqgan import VQGAN, VQGANConfig

logger = logging.getLogger(__name__)

FIRST_STAGE_PREFIX = "first_stage_model."
# Entries a checkpoint may carry that are not part of the autoencoder used for inference:
# the discriminator and LPIPS loss of training, and the colour map used to preview
# segmentation maps.
TRAINING_ONLY_PREFIXES = ("loss.",)
EXTRA_NAMES = ("colorize",)
# Upstream ddconfig keys that only ever take one value in released models; other values
# describe architectures this module does not implement.
_FIXED_DDCONFIG = {"resamp_with_conv": True, "give_pre_end": False, "tanh_out": False,
                   "attn_type": "vanilla", "use_linear_attn": False}
# Fields that decide tensor shapes, compared when a checkpoint does not fit its config.
_SHAPE_FIELDS = ("quantizer", "n_embed", "embed_dim", "z_channels", "ch", "ch_mult",
                 "num_res_blocks", "in_channels", "out_ch")


def read_yaml(path: str | Path) -> Mapping[str, Any]:
    """Parse a config file safely; a missing or malformed file is a :class:`ConfigError`.

    The errors never quote the file's content (the parser's messages show the offending
    line): a file that is no model config, such as a README given by mistake, is named with
    the line and column where parsing failed.
    """
    path = Path(path)
    hint = "give the model's .yaml, the one that came with its checkpoint"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path.") from None
    except IsADirectoryError:
        raise ConfigError(f"{path.name} is a folder, not a config file; {hint}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name} is not a readable YAML file (it is not UTF-8 text); {hint}.") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path.name} ({error.strerror or type(error).__name__}); {hint}.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f" (a syntax error at line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{path.name} is not a readable YAML file{where}; {hint}.") from None
    model = data.get("model", data) if isinstance(data, Mapping) else None
    if not isinstance(model, Mapping) or not isinstance(model.get("params", {}), Mapping):
        raise ConfigError(f"{path.name} does not hold a model config; {hint}.")
    return data


def vqgan_config_from_mapping(data: Mapping[str, Any], *, source: str) -> VQGANConfig:
    """Build a :class:`VQGANConfig` from an upstream config.

    ``data`` may be a whole ``model.yaml`` (``model: {target, params}``), its ``params``, or
    a Taming transformer's ``project.yaml``, whose ``first_stage_config`` is used.
    """
    model = data.get("model", data)
    target = str(model.get("target", ""))
    params = model.get("params", model)
    if target.endswith("Net2NetTransformer") or "first_stage_config" in params:
        first_stage = params.get("first_stage_config") or {}
        target, params = str(first_stage.get("target", "")), first_stage.get("params", {})
    if target and not re.search(r"(VQModel|GumbelVQ|VQModelInterface|VQGAN)$", target):
        raise ConfigError(f"{source} describes a {target.rsplit('.', 1)[-1]}, not a VQGAN; give a VQGAN's config.")
    ddconfig = params.get("ddconfig")
    if not isinstance(ddconfig, Mapping) or "n_embed" not in params or "embed_dim" not in params:
        raise ConfigError(
            f"{source} has no VQGAN parameters (model.params.ddconfig, n_embed, embed_dim); "
            "give the .yaml that came with the checkpoint."
        )
    if params.get("remap"):
        raise ConfigError(f"{source} uses a remapped codebook (remap), which is not supported.")
    known = VQGANConfig.field_names()
    fields_ = {k: v for k, v in ddconfig.items() if k in known}
    for key, value in ddconfig.items():
        if key in _FIXED_DDCONFIG and value != _FIXED_DDCONFIG[key]:
            raise ConfigError(f"{source} sets ddconfig.{key}={value!r}, which this VQGAN does not implement.")
        if key not in known and key not in _FIXED_DDCONFIG:
            logger.warning("%s: ignoring unknown ddconfig key %r", source, key)
    quantizer = "gumbel" if target.endswith("GumbelVQ") else fields_.pop("quantizer", "vq")
    try:
        return VQGANConfig(**fields_, n_embed=int(params["n_embed"]),
                           embed_dim=int(params["embed_dim"]), quantizer=quantizer)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source} is not a valid VQGAN config: {error}") from None


def infer_vqgan_config(state: Mapping[str, torch.Tensor], *, source: str, resolution: int = 256) -> VQGANConfig:
    """Recover the architecture from tensor shapes.

    ``resolution`` (training size) cannot be seen in the weights; 256 is what every released
    model used, and only its ratio to the attention levels matters. ``norm_num_groups`` is
    taken as 32 where the widths allow it (all released models).
    """
    gumbel = "quantize.embed.weight" in state
    codebook_key = "quantize.embed.weight" if gumbel else "quantize.embedding.weight"
    for key in (codebook_key, "post_quant_conv.weight", "encoder.conv_in.weight",
                "decoder.conv_out.weight", "encoder.down.0.block.0.conv1.weight"):
        if key not in state:
            raise CheckpointError(
                f"{source} is not a VQGAN checkpoint (it has no {key}); give a VQGAN or Taming "
                "transformer checkpoint."
            )
    n_embed, embed_dim = state[codebook_key].shape
    ch, in_channels = state["encoder.conv_in.weight"].shape[:2]
    levels = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.down."))
    blocks = {int(k.split(".")[4]) for k in state if k.startswith("encoder.down.0.block.")}
    ch_mult = tuple(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels))
    attention = tuple(resolution // 2**i for i in range(levels) if f"encoder.down.{i}.attn.0.q.weight" in state)
    widths = [ch * m for m in ch_mult]
    return VQGANConfig(
        embed_dim=int(embed_dim), n_embed=int(n_embed),
        z_channels=int(state["post_quant_conv.weight"].shape[0]), resolution=resolution,
        in_channels=int(in_channels), out_ch=int(state["decoder.conv_out.weight"].shape[0]),
        ch=int(ch), ch_mult=ch_mult, num_res_blocks=len(blocks), attn_resolutions=attention,
        quantizer="gumbel" if gumbel else "vq", norm_num_groups=math.gcd(32, int(ch), *widths),
    )


def vqgan_state_dict(checkpoint: Checkpoint | Mapping[str, Any], *, source: str) -> StateDict:
    """The autoencoder's tensors (``meta`` tensors for a :class:`Checkpoint`): the
    ``first_stage_model.`` part of a transformer checkpoint or the whole state dict, without
    training-only entries."""
    state = state_dict_from(checkpoint, source=source)
    if any(key.startswith(FIRST_STAGE_PREFIX) for key in state):
        state = with_prefix(state, FIRST_STAGE_PREFIX)
    return without(state, prefixes=TRAINING_ONLY_PREFIXES, names=EXTRA_NAMES)


def find_config_file(checkpoint: Path) -> Path | None:
    """The yaml that belongs to a checkpoint: ``<stem>.yaml`` beside it, else the single
    ``configs/*project.yaml`` of a Taming log directory (``<logdir>/checkpoints/last.ckpt``)."""
    for sibling in (checkpoint.with_suffix(".yaml"), checkpoint.with_suffix(".yml")):
        if sibling.is_file():
            return sibling
    project = sorted((checkpoint.parent.parent / "configs").glob("*project.yaml"))
    return project[-1] if len(project) >= 1 and checkpoint.parent.name == "checkpoints" else None


def _mismatch_cause(given: VQGANConfig, state: Mapping[str, torch.Tensor], *, source: str, label: str) -> str | None:
    try:
        trained = infer_vqgan_config(state, source=source, resolution=given.resolution)
    except (CheckpointError, ValueError):
        return None
    names = [f for f in _SHAPE_FIELDS if getattr(trained, f) != getattr(given, f)]
    levels = [{i for i in range(c.num_resolutions) if c.level_has_attention(i)} for c in (trained, given)]
    if not names and levels[0] != levels[1]:
        names = ["attn_resolutions"]
    if not names:
        return None

    def show(config: VQGANConfig, name: str) -> str:
        value = getattr(config, name)
        return str(list(value)) if isinstance(value, tuple) else str(value)

    trained_text = ", ".join(f"{n}={show(trained, n)}" for n in names)
    given_text = ", ".join(show(given, n) if len(names) == 1 else f"{n}={show(given, n)}" for n in names)
    return f"this checkpoint was trained with {trained_text}; {label} says {given_text}"


def load_vqgan(
    checkpoint: str | Path,
    config: VQGANConfig | str | Path | Mapping[str, Any] | None = None,
    *,
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike[str] | None = None,
) -> VQGAN:
    """Build a VQGAN from a checkpoint, in eval mode with frozen weights, on ``device``.

    The tensors' shapes are checked against the config before any is read (see
    :mod:`generator.weights.checkpoints`); only the autoencoder's tensors are read.

    Args:
        checkpoint: a ``.ckpt``, ``.pth``, ``.bin`` or ``.safetensors`` file.
        config: a :class:`VQGANConfig`, a path to the upstream ``.yaml``, or its parsed
            contents. When omitted, a ``.yaml`` beside the checkpoint is used if there is
            one, else the architecture is inferred from the tensor shapes.
        device: where the model goes.
        weights_dir: whose store of safe copies a pickled checkpoint goes through.

    Raises:
        CheckpointError: unreadable, unsafe or not fitting its config (the message names
            the differing shapes and the likely cause).
        ConfigError: the config is malformed.
    """
    path = Path(checkpoint)
    source = path.name
    opened = open_checkpoint(path, weights_dir=weights_dir)
    try:
        return _vqgan_from_checkpoint(opened, path, config, source=source).to(device)
    finally:
        opened.close()


def _vqgan_from_checkpoint(checkpoint: Checkpoint, path: Path, config: Any, *, source: str) -> VQGAN:
    state = vqgan_state_dict(checkpoint, source=source)
    if config is None:
        config = find_config_file(path)
    label = "the given config"
    if isinstance(config, (str, Path)):
        label = "its yaml"
        config = vqgan_config_from_mapping(read_yaml(config), source=Path(config).name)
    elif isinstance(config, Mapping):
        config = vqgan_config_from_mapping(config, source=source)
    elif config is None:
        config = infer_vqgan_config(state, source=source)
        logger.info("%s: no yaml given, architecture inferred from tensor shapes", source)
    return vqgan_from_state(state, config, source=source, label=label, read=checkpoint.read)


def vqgan_from_state(state: Mapping[str, torch.Tensor], config: VQGANConfig, *, source: str,
                     label: str = "the given config", what: str = "the VQGAN",
                     read: Callable[[StateDict], StateDict] | None = None) -> VQGAN:
    """Build a VQGAN for ``config`` and load ``state`` strictly, in eval mode with frozen weights.

    Args:
        read: reads ``state``'s ``meta`` tensors once they fit (:meth:`Checkpoint.read`).

    Raises:
        CheckpointError: the tensors do not fit; the message names the fields that differ.
    """
    model = build_strict(
        lambda: VQGAN(config), state, source=source, what=what,
        likely_cause=_mismatch_cause(config, state, source=source, label=label),
        remedy="pass the yaml that came with this checkpoint, or none to infer the architecture", read=read,
    )
    model.requires_grad_(False)
    return model.eval()


def load_vqgan_by_name(
    name_or_path: str,
    config: VQGANConfig | str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    progress: ProgressCallback | None = None,
) -> VQGAN:
    """A VQGAN by registry name (downloaded on first use) or checkpoint file.

    Registry VQGANs bring their architecture; a Taming transformer serves by its first stage,
    described by its project yaml; others (latent-diffusion's) by their yaml or, failing
    that, by their tensor shapes. Names other tools use work too (``sflckr``).

    Raises:
        WeightsError: missing (offline) or a failed download.
        CheckpointError: unsafe, damaged or not fitting its config.
    """
    path = store.resolve(name_or_path, kind="vqgan", weights_dir=weights_dir, offline=offline, progress=progress)
    if config is None and not Path(name_or_path).expanduser().is_file():
        entry = store.get(name_or_path)
        if entry.kind == "vqgan" and entry.config:
            config = VQGANConfig(**entry.config)
        else:
            yamls = [store.locate(store.get(c), path.parent) for c in entry.companions]
            config = next((y for y in yamls if y.is_file()), None)
    return load_vqgan(path, config, device=device, weights_dir=weights_dir)
