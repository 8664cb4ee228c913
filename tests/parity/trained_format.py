"""A checkpoint written by ``train vqgan``'s writer for seeded weights (the named ``tiny`` size and
its loss, discriminator included), shared by the golden maker (``make_trained_goldens.py``, which
builds the ORIGINAL Taming modules from the written yaml) and the test that checks our loader
against those goldens."""

from __future__ import annotations

from pathlib import Path

import torch

from generator.train import vqgan_checkpoint as ckpt
from generator.train.vqgan_losses import LossSettings, VQGANLoss
from generator.train.vqgan_settings import SIZES
from models.vqgan import VQGAN
from tests.parity.seeded import seeded_state_dict

SEED = 2026
IMAGE_SIZE = 32
LOSS = LossSettings(disc_start=250, perceptual_weight=0.0)
GOLDENS_FILE = Path(__file__).resolve().parents[1] / "data" / "trained_vqgan_parity.safetensors"
YAML_FILE = GOLDENS_FILE.with_suffix(".yaml")


def seeded_models() -> tuple[VQGAN, VQGANLoss]:
    """The ``tiny`` VQGAN and its loss with seeded weights (batch-norm statistics kept valid)."""
    vqgan, loss = VQGAN(SIZES["tiny"]), VQGANLoss(LOSS)
    for module, seed in ((vqgan, SEED), (loss, SEED + 1)):
        shapes = {k: list(v.shape) for k, v in module.state_dict().items()}
        state = seeded_state_dict(shapes, seed)
        for key in state:
            if key.endswith("running_var"):
                state[key] = 1.0 + 0.1 * state[key].abs()
            elif key.endswith("num_batches_tracked"):
                state[key] = torch.tensor(7)
        module.load_state_dict(state, strict=True)
    return vqgan.eval(), loss.eval()


def write(folder: Path) -> tuple[Path, Path]:
    """Write the seeded models as ``train vqgan`` does: ``last.ckpt`` and ``last.yaml``."""
    vqgan, loss = seeded_models()
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = ckpt.save_checkpoint(ckpt.lightning_checkpoint(ckpt.model_state(vqgan, loss), global_step=500,
                                                                epoch=3), folder / "last.ckpt")
    config = folder / "last.yaml"
    ckpt.write_text(config, ckpt.yaml_text(ckpt.upstream_yaml(vqgan.config, LOSS.upstream_params(),
                                                              base_learning_rate=4.5e-6)))
    return checkpoint, config


def image(seed: int = SEED) -> torch.Tensor:
    """(1, 3, 32, 32) in [-1, 1]."""
    return torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1
