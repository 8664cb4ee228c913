"""Where a VQGAN training run starts: the architecture of a run from scratch, or a VQGAN the
studio loads (``--from``, refused with one sentence when it is something else), with its
codebook kept, extended or replaced by new codes (from the encoder's outputs or Taming's
uniform draw)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from generator.decoder.loader import load_vqgan, read_yaml, vqgan_config_from_mapping
from generator.errors import CheckpointError, ConfigError, InputError, WeightsError
from generator.train.data import CropSampler
from generator.train.vqgan_settings import SIZES, VQGANTrainSettings
from generator.weights import store
from generator.weights.checkpoints import open_checkpoint
from generator.weights.state_dicts import state_dict_from
from models.vqgan import VQGAN, VQGANConfig

logger = logging.getLogger(__name__)

_ENCODER_INIT_BATCHES = 16  # at most this many batches are encoded to initialise new codes


def base_config(settings: VQGANTrainSettings) -> VQGANConfig:
    """The architecture of a run from scratch: ``architecture``, a named size or an upstream yaml.

    Raises:
        ConfigError: an invalid architecture, or a yaml of a Gumbel VQGAN.
    """
    if settings.architecture is not None:
        try:
            return VQGANConfig(**{**settings.architecture,
                                  "ch_mult": tuple(settings.architecture.get("ch_mult", (1,))),
                                  "attn_resolutions": tuple(settings.architecture.get("attn_resolutions", ()))})
        except (TypeError, ValueError) as error:
            raise ConfigError(f"the architecture is not a valid VQGAN config: {error}") from None
    if settings.model in SIZES:
        return SIZES[settings.model]
    config = vqgan_config_from_mapping(read_yaml(settings.model), source=Path(settings.model).name)
    if config.quantizer != "vq":
        raise ConfigError(f"{Path(settings.model).name} describes a Gumbel VQGAN; training here makes vector-quantised "
                          "ones (VQModel).")
    return config


def check_vqgan_source(name: str, *, weights_dir: str | None, offline: bool | None) -> Path:
    """The checkpoint file of ``--from``, refused with one sentence when it is no VQGAN."""
    given = Path(name).expanduser()
    if not given.is_file():
        try:
            entry = store.get(name)
        except WeightsError:
            entry = None
        if entry is not None and entry.kind != "vqgan":
            raise InputError(f"--from {name} is {entry.kind} weights ({entry.description}), not a VQGAN; give a "
                             "VQGAN's registry name or checkpoint file.")
    path = store.resolve(name, kind="vqgan", weights_dir=weights_dir, offline=offline)
    opened = open_checkpoint(path, weights_dir=weights_dir)
    try:
        keys = set(state_dict_from(opened, source=path.name))
    except CheckpointError:
        raise InputError(f"--from {path.name} is not a VQGAN checkpoint (it holds no state dict); give a VQGAN's "
                         "registry name or checkpoint file.") from None
    finally:
        opened.close()
    if any(key.startswith(("transformer.", "first_stage_model.")) for key in keys):
        raise InputError(f"--from {path.name} is a transformer prior, not a VQGAN; give the VQGAN checkpoint itself "
                         "(a prior's first stage is a registry VQGAN or its own .ckpt).")
    if "quantize.embed.weight" in keys:
        raise InputError(f"--from {path.name} is a Gumbel VQGAN, which cannot be trained here (only vector-quantised "
                         "VQGANs can); give another VQGAN.")
    if "quantize.embedding.weight" not in keys or "decoder.conv_out.weight" not in keys:
        raise InputError(f"--from {path.name} is not a VQGAN checkpoint (it has no codebook and decoder); give a "
                         "VQGAN's registry name or checkpoint file.")
    return path


def load_from(settings: VQGANTrainSettings) -> VQGAN:
    """The VQGAN of ``from_model`` (checked by :func:`check_vqgan_source`), with its config."""
    name = str(settings.from_model)
    path = check_vqgan_source(name, weights_dir=settings.weights_dir, offline=settings.offline)
    config: Any = settings.vqgan_config
    if config is None and not Path(name).expanduser().is_file():
        entry = store.get(name)
        if entry.config:
            config = VQGANConfig(**entry.config)
        else:
            yamls = [store.locate(store.get(c), path.parent) for c in entry.companions]
            config = next((y for y in yamls if y.is_file()), None)
    return load_vqgan(path, config, weights_dir=settings.weights_dir)


def fresh_codebook(count: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Taming's initial codes: uniform in [-1/count, 1/count]."""
    return (torch.rand(count, dim, generator=generator) * 2 - 1) / count  # (count, dim)


@torch.no_grad()
def encoder_codes(vqgan: VQGAN, sampler: CropSampler, count: int, batch_size: int, device: torch.device,
                   generator: torch.Generator) -> torch.Tensor:
    """``count`` latent vectors of the encoder on random crops (distinct ones while there are
    enough; else repeated with a little noise), (count, embed_dim)."""
    pool: list[torch.Tensor] = []
    total = 0
    for _ in range(_ENCODER_INIT_BATCHES):
        h = vqgan.quant_conv(vqgan.encoder(sampler.batch(batch_size).to(device)))  # (B, C, h, w)
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]).float().cpu()  # (B*h*w, C)
        pool.append(flat)
        total += flat.shape[0]
        if total >= count:
            break
    vectors = torch.cat(pool)
    if vectors.shape[0] >= count:
        return vectors[torch.randperm(vectors.shape[0], generator=generator)[:count]].clone()
    chosen = vectors[torch.randint(vectors.shape[0], (count,), generator=generator)]
    noise = torch.randn(chosen.shape, generator=generator) * 0.01 * vectors.std().clamp_min(1e-6)
    return chosen + noise


def with_codebook(vqgan: VQGAN, settings: VQGANTrainSettings, sampler: CropSampler, device: torch.device,
                   generator: torch.Generator, *, source: str) -> VQGAN:
    """``vqgan`` with the codebook ``settings`` asks for: extended or re-initialised.

    Raises:
        ConfigError: a smaller codebook than the loaded one without ``reinit_codebook``.
    """
    old = vqgan.n_codes
    count = settings.codebook if settings.codebook is not None else old
    if count < old and not settings.reinit_codebook:
        raise ConfigError(f"--codebook {count} is smaller than the {old} codes of {source}; give {old} or more to "
                          f"extend its codebook, or add --reinit-codebook to start a new one of {count} codes.")
    if count == old and not settings.reinit_codebook:
        return vqgan
    keep = 0 if settings.reinit_codebook else old
    if settings.codebook_init == "encoder":
        new = encoder_codes(vqgan, sampler, count - keep, settings.batch_size, device, generator)
    else:
        new = fresh_codebook(count - keep, vqgan.code_dim, generator)
    how = "from the encoder's outputs on random crops" if settings.codebook_init == "encoder" else "at random"
    logger.info("codebook: %s%d new codes, initialised %s", f"{keep} codes of {source} kept, " if keep else "",
                count - keep, how)
    grown = VQGAN(replace(vqgan.config, n_embed=count)).to(device)
    state = dict(vqgan.state_dict())
    state["quantize.embedding.weight"] = torch.cat([state["quantize.embedding.weight"][:keep].cpu(), new]).to(device)
    grown.load_state_dict(state, strict=True)
    return grown
