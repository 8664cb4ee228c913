"""The settings of a prior's training run (``python -m generator train prior``), what its run
folder is called, and the settings a resumed run takes from its folder: what
:mod:`generator.train.prior_training` runs, and what the command line and the Train tab fill in."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from generator.errors import ConfigError
from models.gpt import GPTConfig

RUN_KIND = "train-prior"
FOLDER_PREFIX = "train-prior-"
CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
CONDITIONINGS = ("sos", "class")
PRECISIONS = ("auto", "fp32", "bf16")
CHANGEABLE_ON_RESUME = ("steps", "val_every", "sample_every", "sample_count", "save_every")
"""Settings a resumed run may change: none of them alters the training trajectory."""


@dataclass(frozen=True)
class PriorTrainingConfig:
    """Everything that decides a prior's training (``python -m generator train prior``).

    Attributes:
        vqgan: the VQGAN whose codes the prior learns: a registry name or checkpoint file.
        data: the folder of training images (sub-folders: classes).
        vqgan_config: the VQGAN's yaml (default: beside the checkpoint, or the registry's).
        conditioning: ``sos`` (unconditional) or ``class`` (one class per sub-folder).
        size: the images' side in pixels (centre-cropped and resized); a multiple of the
            VQGAN's factor. The prior's window is (size/f) x (size/f) codes.
        steps: optimisation steps in all (a resumed run continues to this count).
        batch_size: sequences per step.
        lr: AdamW's learning rate (constant).
        weight_decay: AdamW's weight decay, on the linear layers' weights only.
        grad_clip: the largest gradient norm (0: no clipping).
        n_layer, n_head, n_embd: the GPT's architecture (Taming's names).
        val_fraction: the share of images held out for the validation loss (at least one when
            there are two or more images; 0: none).
        val_every, sample_every, save_every: steps between validation losses, sample grids and
            saved training states (0: only at the end).
        sample_count: images per sample grid (per class for a class-conditional prior).
        seed: the seed of every random draw (None: a random one, recorded).
        precision: ``auto`` (bf16 autocast on GPUs that have it, else float32), ``fp32`` or ``bf16``.
        name: the run's and the checkpoint's name (default: the data folder's name).
    """

    vqgan: str
    data: str
    vqgan_config: str | None = None
    conditioning: str = "sos"
    size: int = 256
    steps: int = 5000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 512
    val_fraction: float = 0.05
    val_every: int = 250
    sample_every: int = 500
    sample_count: int = 8
    save_every: int = 1000
    seed: int | None = None
    precision: str = "auto"
    name: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (bool(str(self.vqgan).strip()), "--vqgan must name a VQGAN (a registry name or checkpoint file)."),
            (bool(str(self.data).strip()), "--data must name a folder of training images."),
            (self.conditioning in CONDITIONINGS,
             f"--conditioning must be one of {', '.join(CONDITIONINGS)}, not {self.conditioning!r}."),
            (self.precision in PRECISIONS,
             f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}."),
            (self.size >= 1, f"--size must be a positive number of pixels, not {self.size}."),
            (self.steps >= 1, f"--steps must be at least 1, not {self.steps}."),
            (self.batch_size >= 1, f"--batch-size must be at least 1, not {self.batch_size}."),
            (math.isfinite(self.lr) and self.lr > 0, f"--lr must be a positive number, not {self.lr}."),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"--weight-decay must be 0 or more, not {self.weight_decay}."),
            (math.isfinite(self.grad_clip) and self.grad_clip >= 0,
             f"--grad-clip must be 0 or more, not {self.grad_clip}."),
            (0 <= self.val_fraction < 1, f"--val-fraction must be from 0 to below 1, not {self.val_fraction}."),
            (min(self.val_every, self.sample_every, self.save_every) >= 0,
             "--val-every, --sample-every and --save-every must be 0 or more."),
            (self.sample_count >= 1, f"--sample-count must be at least 1, not {self.sample_count}."),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            self.gpt_config(vocab_size=1, block_size=1)
        except ValueError as error:
            raise ConfigError(f"the transformer's shape is not valid: {error}") from None

    def gpt_config(self, *, vocab_size: int, block_size: int) -> GPTConfig:
        """The GPT of this config for a codebook of ``vocab_size`` and a window of ``block_size`` codes."""
        return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=self.n_layer, n_head=self.n_head,
                         n_embd=self.n_embd)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorTrainingConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def resume_config(folder: str | Path, **given: Any) -> PriorTrainingConfig:
    """The recorded settings of the run in ``folder`` with the ``given`` ones (None: not given)
    applied: only :data:`CHANGEABLE_ON_RESUME` may differ from the record.

    Raises:
        ConfigError: ``folder`` is no prior training run, or a given setting would change the
            training trajectory.
    """
    folder = Path(folder)
    try:
        record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        recorded = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record, recorded = {}, {}
    if not isinstance(record, dict) or record.get("mode") != RUN_KIND or not isinstance(recorded, dict):
        raise ConfigError(f"--resume {folder} is not the folder of a prior training run (it has no run.json of "
                          "one); give an outputs/train-prior-... folder.")
    config = PriorTrainingConfig.from_dict(recorded)
    changes = {}
    for key, value in given.items():
        if value is None:
            continue
        if key in CHANGEABLE_ON_RESUME:
            changes[key] = value
        elif value != getattr(config, key):
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} cannot change when resuming (this run was trained with "
                              f"{getattr(config, key)!r}); leave it out, or start a new run.")
    return replace(config, **changes)
