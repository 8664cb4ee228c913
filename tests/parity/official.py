"""The official VQGAN checkpoints' key tables, their configs, and the taming parity goldens
(``make_taming_goldens.py``), shared by the tests that check the model against them."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from models.vqgan import VQGANConfig

DATA = Path(__file__).resolve().parents[1] / "data"
KEYS: dict[str, dict[str, list[int]]] = json.loads((DATA / "official_vqgan_keys.json").read_text())
"""Every official checkpoint's state-dict keys and shapes, by registry name."""
GOLDENS = load_file(str(DATA / "taming_parity.safetensors"))
"""taming's outputs for seeded weights: the input, and per model its latent, indices, decoding."""
OFFICIAL = {
    "vqgan_imagenet_f16_16384": VQGANConfig(n_embed=16384),
    "vqgan_imagenet_f16_1024": VQGANConfig(n_embed=1024),
    "vqgan_gumbel_f8": VQGANConfig(n_embed=8192, ch_mult=(1, 1, 2, 4), attn_resolutions=(32,), quantizer="gumbel"),
}
"""The config of each official checkpoint."""
