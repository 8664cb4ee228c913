"""The settings of a VQGAN training run (``python -m generator train vqgan``), its named sizes,
and the checks of their values: what :mod:`generator.train.vqgan_train` runs, and what the
command line and the Train tab fill in."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.errors import ConfigError
from generator.train.vqgan_losses import LossSettings
from models.vqgan import VQGANConfig

SIZES: dict[str, VQGANConfig] = {
    "tiny": VQGANConfig(embed_dim=64, n_embed=512, z_channels=64, resolution=128, ch=32, ch_mult=(1, 1, 2, 2),
                        num_res_blocks=1, attn_resolutions=()),
    "small": VQGANConfig(embed_dim=128, n_embed=1024, z_channels=128, resolution=256, ch=64,
                         ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,)),
    "base": VQGANConfig(embed_dim=256, n_embed=1024, z_channels=256, resolution=256, ch=128,
                        ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,)),
}
"""The named sizes: ``tiny`` (f8, about 1 M parameters), ``small`` (f16, about 18 M) and ``base``
(f16, the official ``vqgan_imagenet_f16_1024`` ddconfig, about 72 M). Every width is a multiple
of 32, so Taming's own modules (GroupNorm with 32 groups) load them too."""
CODEBOOK_INITS = ("encoder", "random")
PRECISIONS = ("auto", "fp32", "bf16")
RESTART_DEAD_CODES = 100  # steps between dead-code restarts of a run from scratch
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESUME_OVERRIDES = ("steps", "sample_every", "log_every", "save_every", "device", "precision", "compile",
                    "weights_dir", "offline")
"""The settings a resumed run may change (the others are the run's own)."""


@dataclass(frozen=True)
class VQGANTrainSettings:
    """Everything a VQGAN training run is made of (``config.json`` holds it, resolved).

    Attributes:
        data: the folder of training images (any size; sub-folders are read too).
        name: the model's name in the weights folder (default: the data folder's name).
        model: a named size (:data:`SIZES`) to train from scratch, or an upstream ``.yaml``.
        architecture: the VQGANConfig as a dict; when set, it decides the architecture
            (recorded by every run; tests pass narrow ones).
        from_model: a VQGAN (registry name or checkpoint file) to fine-tune instead.
        vqgan_config: the ``.yaml`` of a ``from_model`` file (default: the one beside it).
        codebook: codes in the codebook (default: the size's, or the loaded model's).
        reinit_codebook: a loaded model's codebook is replaced by ``codebook`` new codes
            instead of extended by the missing ones.
        codebook_init: how new codes start: ``encoder`` (the encoder's outputs on random crops
            of the data) or ``random`` (Taming's uniform(-1/n, 1/n)).
        size: the side of the square random crops (a multiple of the downsampling factor).
        lr: Adam's learning rate (Taming's recipe: 4.5e-6 x batch size x accumulation x GPUs).
        accumulate: micro-batches of ``batch_size`` per optimisation step.
        seed: drives the initialisation, the crops and their order (random when None; recorded).
        disc_start: the first step with the discriminator (it is off before).
        restart_dead_codes: steps between dead-code restarts (codes no encoder output picked in
            that many steps move onto encoder outputs, :mod:`generator.train.code_restarts`); 0: never;
            default: every 100 steps from scratch, never when fine-tuning (``from_model``).
        precision: ``auto`` (bf16 autocast where the device computes it natively), ``fp32``, ``bf16``.
        compile: ``torch.compile`` the encoder, decoder and discriminator.
        sample_every, log_every, save_every: steps between reconstruction grids, metric lines
            and checkpoints (one of each is also written at the last step).
        out: the parent of the run folder.
    """

    data: str
    name: str | None = None
    model: str = "small"
    architecture: Mapping[str, Any] | None = None
    from_model: str | None = None
    vqgan_config: str | None = None
    codebook: int | None = None
    reinit_codebook: bool = False
    codebook_init: str = "encoder"
    size: int = 256
    steps: int = 5000
    batch_size: int = 4
    accumulate: int = 1
    lr: float = 1e-4
    seed: int | None = None
    disc_start: int = 10000
    restart_dead_codes: int | None = None
    disc_weight: float = 0.8
    disc_layers: int = 3
    disc_ndf: int = 64
    perceptual_weight: float = 1.0
    codebook_weight: float = 1.0
    beta: float = 0.25
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    sample_every: int = 500
    log_every: int = 10
    save_every: int = 1000
    out: str = "outputs"
    weights_dir: str | None = None
    offline: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        values = dataclasses.asdict(self)
        values["architecture"] = dict(self.architecture) if self.architecture is not None else None
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config.json") -> VQGANTrainSettings:
        """The settings of a ``config.json``; unknown keys are ignored.

        Raises:
            ConfigError: a required setting is missing or a value has the wrong type.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in values.items() if key in known})
        except TypeError:
            raise ConfigError(f"{source} does not hold the settings of a VQGAN training run; give the folder of a "
                              "run of `python -m generator train vqgan`.") from None

    def loss_settings(self) -> LossSettings:
        """The objective's weights."""
        return LossSettings(disc_start=self.disc_start, disc_weight=self.disc_weight,
                            disc_num_layers=self.disc_layers, disc_ndf=self.disc_ndf,
                            codebook_weight=self.codebook_weight, perceptual_weight=self.perceptual_weight,
                            beta=self.beta)


def check_settings(settings: VQGANTrainSettings) -> None:
    """Refuse bad values with one sentence each, before anything is loaded.

    Raises:
        ConfigError: a value out of range.
    """
    positive = {"steps": settings.steps, "batch-size": settings.batch_size, "accumulate": settings.accumulate,
                "sample-every": settings.sample_every, "log-every": settings.log_every,
                "save-every": settings.save_every, "size": settings.size, "disc-layers": settings.disc_layers,
                "disc-ndf": settings.disc_ndf}
    for flag, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"--{flag} must be a whole number of 1 or more, not {value}.")
    if not settings.lr > 0 or not math.isfinite(settings.lr):
        raise ConfigError(f"--lr must be a positive number, not {settings.lr}.")
    for flag, value in (("disc-weight", settings.disc_weight), ("perceptual-weight", settings.perceptual_weight),
                        ("codebook-weight", settings.codebook_weight), ("beta", settings.beta)):
        if not value >= 0 or not math.isfinite(value):
            raise ConfigError(f"--{flag} must be 0 or more, not {value}.")
    if settings.disc_start < 0:
        raise ConfigError(f"--disc-start must be 0 or more, not {settings.disc_start}.")
    if settings.restart_dead_codes is not None and (not isinstance(settings.restart_dead_codes, int)
                                                    or settings.restart_dead_codes < 0):
        raise ConfigError(f"--restart-dead-codes must be a whole number of steps, or 0 for never, "
                          f"not {settings.restart_dead_codes}.")
    if settings.codebook is not None and settings.codebook < 2:
        raise ConfigError(f"--codebook must be 2 codes or more, not {settings.codebook}.")
    if settings.codebook_init not in CODEBOOK_INITS:
        raise ConfigError(f"--codebook-init must be one of {', '.join(CODEBOOK_INITS)}, "
                          f"not {settings.codebook_init!r}.")
    if settings.name is not None and not _NAME.fullmatch(settings.name):
        raise ConfigError(f"--name {settings.name!r} cannot be a file name; use letters, digits, '.', '_' and '-'.")
    if settings.precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not {settings.precision!r}.")
    if settings.from_model is None and settings.architecture is None and settings.model not in SIZES \
            and Path(settings.model).suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"--model must be one of {', '.join(SIZES)} or a VQGAN .yaml, not {settings.model!r}.")
    if settings.vqgan_config is not None and settings.from_model is None:
        raise ConfigError("--vqgan-config describes the checkpoint of --from; give --from too, or --model YAML to "
                          "train that architecture from scratch.")
