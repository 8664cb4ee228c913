"""Regenerate tests/data/official_vqgan_keys.json and tests/data/taming_parity.safetensors
from the ORIGINAL taming-transformers classes.

Not part of the test suite: it needs the taming source, which the project never depends on.
Run it once in a throwaway install, for example:

    pip install --no-deps --target /tmp/taming_pkg taming-transformers-rom1504==0.0.6
    PYTHONPATH=/tmp/taming_pkg:. .venv/bin/python tests/parity/make_taming_goldens.py

It imports ``taming.models.vqgan.VQModel`` / ``GumbelVQ`` with stand-ins for the two modules
that no longer import on current torch (pytorch_lightning and taming.main, used only for
training), builds the official f16-16384, f16-1024 and Gumbel f8 architectures from their
published ddconfigs, loads seeded random weights, and records the key names and shapes, the
encoder latents, the code indices and the decoded images for a seeded input.
``tests/models/test_vqgan_parity.py`` then checks models/vqgan.py against these outputs.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.parity.seeded import seeded_image, seeded_state_dict

DATA = Path(__file__).resolve().parents[1] / "data"
F16 = dict(double_z=False, z_channels=256, resolution=256, in_channels=3, out_ch=3, ch=128,
           ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16], dropout=0.0)
F8 = dict(F16, ch_mult=[1, 1, 2, 4], attn_resolutions=[32])
MODELS = {
    "vqgan_imagenet_f16_16384": dict(ddconfig=F16, n_embed=16384, embed_dim=256, gumbel=False),
    "vqgan_imagenet_f16_1024": dict(ddconfig=F16, n_embed=1024, embed_dim=256, gumbel=False),
    "vqgan_gumbel_f8": dict(ddconfig=F8, n_embed=8192, embed_dim=256, gumbel=True),
}
IMAGE_SIZE = 64
SEED = 1234


def _stub_training_modules() -> None:
    lightning = types.ModuleType("pytorch_lightning")
    lightning.LightningModule = torch.nn.Module
    sys.modules["pytorch_lightning"] = lightning
    main = types.ModuleType("taming.main")
    main.instantiate_from_config = lambda config: torch.nn.Identity()
    sys.modules["taming.main"] = main


def main() -> None:
    _stub_training_modules()
    from taming.models.vqgan import GumbelVQ, VQModel

    keys: dict[str, dict[str, list[int]]] = {}
    goldens: dict[str, torch.Tensor] = {}
    image = seeded_image(IMAGE_SIZE, SEED)
    goldens["input"] = image
    for name, spec in MODELS.items():
        common = dict(ddconfig=spec["ddconfig"], lossconfig={}, n_embed=spec["n_embed"],
                      embed_dim=spec["embed_dim"])
        if spec["gumbel"]:
            model = GumbelVQ(temperature_scheduler_config={}, **common)
        else:
            model = VQModel(**common)
        model.loss = None  # the stand-in loss is not part of a checkpoint's model weights
        del model.loss
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        keys[name] = shapes
        model.load_state_dict(seeded_state_dict(shapes, SEED), strict=True)
        model.eval()
        with torch.no_grad():
            h = model.quant_conv(model.encoder(image))
            if spec["gumbel"]:
                indices = model.quantize.proj(h).argmax(dim=1)
                z_q = model.quantize.embed(indices).permute(0, 3, 1, 2)
            else:
                _, _, (_, _, flat) = model.quantize(h)
                indices = flat.view(h.shape[0], h.shape[2], h.shape[3])
                z_q = model.quantize.get_codebook_entry(
                    flat.view(-1), (h.shape[0], h.shape[2], h.shape[3], h.shape[1]))
            decoded = model.decode(z_q)
        goldens[f"{name}.latent"] = h.contiguous()
        goldens[f"{name}.indices"] = indices.contiguous()
        goldens[f"{name}.decoded"] = decoded.contiguous()
        print(f"{name}: {len(shapes)} tensors, latent {tuple(h.shape)}, decoded {tuple(decoded.shape)}")

    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "official_vqgan_keys.json").write_text(json.dumps(keys, indent=1, sort_keys=True) + "\n")
    save_file(goldens, str(DATA / "taming_parity.safetensors"),
              metadata={"source": "taming-transformers-rom1504 0.0.6", "seed": str(SEED)})


if __name__ == "__main__":
    main()
