"""A checkpoint written by ``train vqgan`` is Taming's own format: the ORIGINAL Taming modules,
built from the yaml it writes and loaded from its ``.ckpt``, gave the outputs recorded in
tests/data/trained_vqgan_parity.* (``tests/parity/make_trained_goldens.py``, run once against
taming-transformers 0.0.6); the project's loader gives the same from the same files."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from generator.decoder.loader import load_vqgan
from generator.train.vqgan_checkpoint import read_checkpoint
from generator.train.vqgan_losses import NLayerDiscriminator
from tests.parity.trained_format import GOLDENS_FILE, LOSS, YAML_FILE, image, write


def test_the_written_files_are_the_ones_the_original_modules_were_built_from(tmp_path: Path) -> None:
    _, config = write(tmp_path)
    assert config.read_text() == YAML_FILE.read_text()


def test_the_loader_gives_the_original_modules_outputs_from_the_written_checkpoint(tmp_path: Path) -> None:
    checkpoint, _ = write(tmp_path)
    goldens = load_file(str(GOLDENS_FILE))
    model = load_vqgan(checkpoint)  # strictly, its yaml found beside it
    x = image()
    with torch.no_grad():
        latent = model.encode(x)
        quantized = model.quantize(latent)
        indices, decoded = quantized.indices, model.decode(quantized.z_q)
    assert torch.allclose(latent, goldens["latent"], atol=1e-4)
    assert torch.equal(indices.reshape(goldens["indices"].shape), goldens["indices"])
    assert torch.allclose(decoded, goldens["decoded"], atol=1e-4)


def test_the_written_discriminator_is_the_original_one(tmp_path: Path) -> None:
    checkpoint, _ = write(tmp_path)
    state = read_checkpoint(checkpoint)["state_dict"]  # through the trust boundary, as resuming reads it
    discriminator = NLayerDiscriminator(LOSS.disc_in_channels, LOSS.disc_ndf, LOSS.disc_num_layers).eval()
    discriminator.load_state_dict({k.removeprefix("loss.discriminator."): v for k, v in state.items()
                                   if k.startswith("loss.discriminator.")}, strict=True)
    with torch.no_grad():
        assert torch.allclose(discriminator(image()), load_file(str(GOLDENS_FILE))["logits"], atol=1e-4)
