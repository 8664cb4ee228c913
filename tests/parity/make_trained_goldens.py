"""Regenerate tests/data/trained_vqgan_parity.{safetensors,yaml}: what the ORIGINAL Taming
modules, built from the yaml that ``train vqgan`` writes and loaded from its ``.ckpt``, output.

Not part of the test suite (the project never depends on taming); run it once in a throwaway install:

    pip install --no-deps --target /tmp/taming_pkg taming-transformers-rom1504==0.0.6
    PYTHONPATH=/tmp/taming_pkg:. .venv/bin/python tests/parity/make_trained_goldens.py

Lightning and ``taming.main`` are stood in for (they no longer import on current torch; only
``instantiate_from_config`` is needed), and LPIPS's pretrained VGG is not downloaded: the written
run trained without the perceptual term, so its ``loss.perceptual_loss`` is the only part of
the original not in the checkpoint (recorded and checked). tests/train/test_taming_format.py
checks the project's loader on the same written files against these outputs.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.parity import taming_stand_ins
from tests.parity.trained_format import GOLDENS_FILE, YAML_FILE, image, write


def main() -> None:
    taming_stand_ins.install()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, config = write(Path(folder))
        text = config.read_text()
        params = yaml.safe_load(text)["model"]["params"]
        module, _, name = yaml.safe_load(text)["model"]["target"].rpartition(".")
        model = getattr(importlib.import_module(module), name)(**params)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(key.startswith("loss.perceptual_loss.") for key in missing), missing
    model.eval()
    x = image()
    with torch.no_grad():
        h = model.quant_conv(model.encoder(x))
        quant, _, (_, _, indices) = model.quantize(h)
        decoded = model.decode(quant)
        logits = model.loss.discriminator(x)
    GOLDENS_FILE.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latent": h.contiguous(), "indices": indices.reshape(h.shape[0], *h.shape[2:]).contiguous(),
               "decoded": decoded.contiguous(), "logits": logits.contiguous()}, str(GOLDENS_FILE))
    YAML_FILE.write_text(text)
    print(f"wrote {GOLDENS_FILE} and {YAML_FILE}: decoded {tuple(decoded.shape)}, logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
