"""A trained VQGAN in the official formats: a Lightning-style ``.ckpt`` and Taming's ``.yaml``.

The checkpoint is what PyTorch Lightning wrote for Taming: a ``torch.save``'d dict with
``state_dict`` (the upstream key names: ``encoder.*``, ``decoder.*``,
``quantize.embedding.weight``, ``quant_conv.*``, ``post_quant_conv.*``, and the loss's
``loss.discriminator.*`` and, when LPIPS was used, ``loss.perceptual_loss.*``), ``global_step``
and ``epoch``. A run's own ``last.ckpt`` also holds what resuming needs under
:data:`TRAINING_STATE`: one flat mapping of tensors (optimiser states, random generator states,
where the data order stands), which the project's safe copies keep (they keep the tensors of
every top-level mapping), so resuming reads the file through the same trust boundary as every
other checkpoint. The yaml is upstream's ``model: {target: taming.models.vqgan.VQModel, params:
{embed_dim, n_embed, ddconfig, lossconfig}}``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from generator.errors import CheckpointError, ConfigError
from generator.io.atomic_files import output_error, replace_bytes_atomic
from generator.weights import store
from generator.weights.checkpoints import read_checkpoint
from models.vqgan import VQGAN, VQGANConfig

TRAINING_STATE = "vqgan_studio_training"
"""The checkpoint key of the state that resuming needs (not part of the upstream format)."""
VQMODEL_TARGET = "taming.models.vqgan.VQModel"
LOSS_TARGET = "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"
# ddconfig keys upstream's Encoder/Decoder take, in upstream's order, with the fixed ones.
_DDCONFIG_KEYS = ("double_z", "z_channels", "resolution", "in_channels", "out_ch", "ch", "ch_mult",
                  "num_res_blocks", "attn_resolutions", "dropout")
UPSTREAM_GROUPS = 32


def upstream_yaml(config: VQGANConfig, loss_params: Mapping[str, Any], *,
                  base_learning_rate: float | None = None) -> dict[str, Any]:
    """The upstream ``model.yaml`` for ``config`` trained with ``loss_params`` (its ddconfig:
    :func:`upstream_ddconfig`)."""
    if config.quantizer != "vq":
        raise ConfigError("only a vector-quantised VQGAN (VQModel) can be written as a trained model.")
    ddconfig = upstream_ddconfig(config)
    model: dict[str, Any] = {}
    if base_learning_rate is not None:
        model["base_learning_rate"] = float(base_learning_rate)
    model.update(target=VQMODEL_TARGET, params={
        "embed_dim": config.embed_dim, "n_embed": config.n_embed, "ddconfig": ddconfig,
        "lossconfig": {"target": LOSS_TARGET, "params": dict(loss_params)},
    })
    return {"model": model}


def upstream_ddconfig(config: VQGANConfig) -> dict[str, Any]:
    """The upstream ``ddconfig`` of ``config``: the keys Taming's Encoder and Decoder take, in its
    order, plus ``norm_num_groups`` only when it is not upstream's 32 (the project's loader reads
    it; Taming's modules ignore unknown keys)."""
    values = config.to_dict()
    ddconfig = {key: values[key] for key in _DDCONFIG_KEYS}
    if config.norm_num_groups != UPSTREAM_GROUPS:
        ddconfig["norm_num_groups"] = config.norm_num_groups
    return ddconfig


def yaml_text(data: Mapping[str, Any]) -> str:
    """``data`` as YAML, keys in the order given."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)


def model_state(vqgan: VQGAN, loss: nn.Module | None) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of the checkpoint: the autoencoder's tensors and the loss's under ``loss.``."""
    state = {key: value.detach().cpu().clone() for key, value in vqgan.state_dict().items()}
    if loss is not None:
        state.update({f"loss.{key}": value.detach().cpu().clone() for key, value in loss.state_dict().items()})
    return state


def lightning_checkpoint(state: Mapping[str, torch.Tensor], *, global_step: int, epoch: int,
                         training_state: Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The dict a Lightning ``.ckpt`` holds (``training_state`` under :data:`TRAINING_STATE`)."""
    checkpoint: dict[str, Any] = {"epoch": int(epoch), "global_step": int(global_step),
                                  "state_dict": dict(state)}
    if training_state is not None:
        checkpoint[TRAINING_STATE] = {key: value.detach().cpu().contiguous().clone()
                                      for key, value in training_state.items()}
    return checkpoint


def save_checkpoint(checkpoint: Mapping[str, Any], path: Path) -> Path:
    """``torch.save`` ``checkpoint`` to ``path`` atomically, replacing the file there if any.

    Raises:
        OutputError: the disk is full or the folder is not writable.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        torch.save(dict(checkpoint), tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise output_error(error, path) from error
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, replacing the file there if any."""
    return replace_bytes_atomic(Path(path), text.encode("utf-8"))


def read_training_checkpoint(path: Path, *, weights_dir: str | os.PathLike[str] | None = None,
                             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(``state_dict``, training state) of a run's checkpoint, read through the trust boundary.

    Raises:
        CheckpointError: unreadable, or it holds no training state (not a run's ``last.ckpt``).
    """
    loaded = read_checkpoint(path, weights_dir=weights_dir)
    state, training = loaded.get("state_dict"), loaded.get(TRAINING_STATE)
    if not isinstance(state, Mapping) or not isinstance(training, Mapping) or not training:
        raise CheckpointError(f"{Path(path).name} holds no training state to resume from; give the folder of a "
                              "run of `python -m generator train vqgan`.")
    return dict(state), dict(training)


def flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """An optimiser's per-parameter state as ``<prefix>.<index>.<name>`` tensors."""
    flat = {}
    for index, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            flat[f"{prefix}.{index}.{name}"] = tensor
    return flat


def restore_optimizer(prefix: str, optimizer: torch.optim.Optimizer, flat: Mapping[str, torch.Tensor]) -> None:
    """Load the state :func:`flatten_optimizer` wrote into ``optimizer`` (built with the same
    parameters and settings).

    Raises:
        CheckpointError: the state does not fit the optimiser's parameters.
    """
    current = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        if key.startswith(prefix + "."):
            index, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    known = {index for group in current["param_groups"] for index in group["params"]}
    if not set(state) <= known:
        raise CheckpointError("the run's optimiser state does not fit its model; the checkpoint belongs to "
                              "another run.")
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def python_random_state(state: tuple[Any, ...]) -> torch.Tensor:
    """``random.Random.getstate()`` (version 3, 625 words, no pending Gaussian) as a tensor."""
    version, words, gauss = state
    if version != 3 or gauss is not None:
        raise ValueError("unexpected state of Python's random generator")
    return torch.tensor(list(words), dtype=torch.int64)


def python_random_from(tensor: torch.Tensor) -> tuple[Any, ...]:
    """The inverse of :func:`python_random_state`."""
    return 3, tuple(int(word) for word in tensor.tolist()), None


def registered_paths(name: str, weights_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """(``<name>.ckpt``, ``<name>.yaml``) in the weights folder, where menus list them."""
    root = store.weights_dir(weights_dir)
    return root / f"{name}.ckpt", root / f"{name}.yaml"


def name_is_taken(name: str, weights_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``<name>.ckpt`` or ``.yaml`` is in the weights folder, or a registry file is called so."""
    checkpoint, config = registered_paths(name, weights_dir)
    registry = {file for entry in store.REGISTRY.values() for file in (entry.filename, *entry.aliases)}
    return checkpoint.exists() or config.exists() or bool({checkpoint.name, config.name} & registry)


def free_name(base: str, weights_dir: str | os.PathLike[str] | None = None,
              reserved: Iterable[str] = ()) -> str:
    """``base``, or ``base-2``, ``base-3`` ... : the first name not taken in the weights folder."""
    reserved = set(reserved)
    name, number = base, 1
    while name in reserved or name_is_taken(name, weights_dir):
        number += 1
        name = f"{base}-{number}"
    return name


def register(name: str, checkpoint: Mapping[str, Any], config_text: str,
             weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``<name>.ckpt`` (the model, without training state) and ``<name>.yaml`` into the
    weights folder, replacing this run's earlier ones; returns the checkpoint's path."""
    checkpoint_path, config_path = registered_paths(name, weights_dir)
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    model_only = {key: value for key, value in checkpoint.items() if key != TRAINING_STATE}
    write_text(config_path, config_text)
    return save_checkpoint(model_only, checkpoint_path)
