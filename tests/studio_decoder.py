"""A decoder that reproduces images, for the tests that need one (a pytest plugin).

The tiny random VQGAN of tests/factories.py decodes any code grid to noise, which is enough to
test plumbing but not to measure what a user sees (how close a reconstruction is, how much a
video flickers). ``studio_decoder`` is the studio model's VQGAN (``generator.train.studio``):
the tiny named size trained here on the studio's drawn images, on a short schedule. It is
trained once per session (about a minute and a half on one CPU core) and kept in pytest's cache
folder under a key of the training code and schedule, so later local sessions reuse it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

STEPS = 800
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StudioDecoder:
    """The trained VQGAN's checkpoint and yaml, and the folder of the images it was trained on."""

    checkpoint: Path
    config: Path
    images: Path


def _key() -> str:
    digest = hashlib.sha256(f"{STEPS} {torch.__version__}".encode())
    for path in sorted((ROOT / "generator" / "train").glob("*.py")) + [ROOT / "models" / "vqgan.py"]:
        digest.update(path.read_bytes())  # the training code as it is: any change trains it again
    return digest.hexdigest()[:16]


def train_studio_decoder(folder: Path) -> StudioDecoder:
    """Train the studio VQGAN on a short schedule into ``folder`` (one thread, seeded)."""
    from generator.train.studio import StudioRecipe, studio_vqgan_settings, write_images
    from generator.train.vqgan_train import VQGANTraining

    recipe = StudioRecipe(vqgan_steps=STEPS)
    images = write_images(folder / "images", recipe.per_class, recipe.seed)
    settings = studio_vqgan_settings(recipe, images, folder / "runs", device="cpu",
                                     weights_dir=str(folder / "weights"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on two busy cores are many times slower for these convolutions
    try:
        result = VQGANTraining.start(settings).run()
    finally:
        torch.set_num_threads(threads)
    return StudioDecoder(result.checkpoint, result.config, images)


@pytest.fixture(scope="session")
def studio_decoder(request: pytest.FixtureRequest) -> StudioDecoder:
    """The studio VQGAN (trained once, then taken from pytest's cache)."""
    folder = Path(request.config.cache.mkdir("studio-decoder")) / _key()
    done = folder / "done"
    if done.is_file():
        checkpoint, config = done.read_text().splitlines()
        return StudioDecoder(Path(checkpoint), Path(config), folder / "images")
    decoder = train_studio_decoder(folder)
    done.write_text(f"{decoder.checkpoint}\n{decoder.config}\n")
    return decoder
