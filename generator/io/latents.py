"""A run's latent as a file: ``latent.safetensors`` beside ``final.png``, so a finished or
stopped run can be continued exactly where it stopped (``init=latent``).

safetensors holds raw tensors and a JSON header only: reading one never runs code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from generator.errors import InputError

LATENT_FILE = "latent.safetensors"
_KEY = "latent"


def latent_bytes(latent: torch.Tensor) -> bytes:
    """The bytes of ``latent.safetensors`` for a (1, C, h, w) latent (stored as float32)."""
    return save({_KEY: latent.detach().to("cpu", torch.float32).contiguous()}, metadata={"format": "pt"})


def read_latent(path: str | Path) -> torch.Tensor:
    """The (1, C, h, w) float32 latent saved in a run folder (``path``: the folder or the file).

    Raises:
        InputError: the file is missing, unreadable or holds no single finite latent.
    """
    path = Path(path)
    if path.is_dir():
        path = path / LATENT_FILE
    hint = "give a run folder written by this tool (runs save latent.safetensors beside final.png)"
    try:
        tensors = load(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; {hint}.") from None
    except (OSError, SafetensorError, ValueError) as error:
        raise InputError(f"{path} is not a readable latent ({error}); {hint}.") from None
    latent = tensors.get(_KEY)
    if latent is None or latent.dim() != 4 or latent.shape[0] != 1 or not latent.is_floating_point():
        raise InputError(f"{path} holds no latent of shape (1, C, h, w); {hint}.")
    if not torch.isfinite(latent).all():
        raise InputError(f"{path} holds a latent that is not finite; {hint}.")
    return latent.float()
