"""Shared fixtures: every test runs offline, on tiny random models, with a private weights dir."""

from __future__ import annotations

import os

# Before anything imports gradio or huggingface_hub: no analytics, no hub lookups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# One thread count for every run of the suite, whatever the machine's load (the automatic choice
# follows the load, and float results can differ with the thread count); tests/test_threads.py
# checks the automatic rule with it unset.
os.environ.setdefault("GENERATOR_THREADS", "2")

import pytest
import torch

# the file_server, local_ray and studio_decoder fixtures
pytest_plugins = ["tests.http_server", "tests.ray_cluster", "tests.studio_decoder"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def safe_copies(tmp_path_factory: pytest.TempPathFactory):
    """One store of safe checkpoint copies for the session: copies are keyed by the sha256 of
    the file's bytes, so the same test model is converted by the limited child once."""
    return tmp_path_factory.mktemp("safe-copies")


@pytest.fixture(autouse=True)
def _isolated_weights(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, safe_copies) -> None:
    """No test reads or writes the checkout's weights/ folder or reaches the network by accident."""
    monkeypatch.setenv("GENERATOR_WEIGHTS_DIR", str(tmp_path_factory.mktemp("weights")))
    monkeypatch.setenv("GENERATOR_SAFE_COPIES_DIR", str(safe_copies))
    monkeypatch.setenv("GENERATOR_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory):
    """Tiny VQGAN and CLIP saved once per session in the official file formats."""
    from tests.factories import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_files):
    """A TextToImage loaded from the tiny files through the real loading path, on the CPU."""
    from generator.text_to_image.pipeline import TextToImage

    return TextToImage.from_pretrained(tiny_files.models(), device="cpu")
