"""``--flow raft``: torchvision's RAFT loaded from a file in the official format (a pickled
state dict, read through the checkpoint boundary), a restyle that uses it, and one sentence for a
file that is not RAFT or weights that are not there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.animate.raft import load_raft
from generator.errors import CheckpointError, WeightsError
from generator.weights.copies import copies_dir, copy_path
from generator.weights.digests import sha256_of
from tests.animate.conftest import animate, animation_config, frames_of


@pytest.fixture(scope="module")
def raft_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raft_small with random weights, saved as torchvision's files are (``torch.save`` of the state dict)."""
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_small_random.pth"
    torch.save(raft_small(weights=None, progress=False).state_dict(), path)
    return path


def test_raft_loads_through_the_checkpoint_boundary_and_gives_a_flow_per_pixel(raft_file: Path, tmp_path: Path) -> None:
    flow = load_raft(str(raft_file), weights_dir=tmp_path / "weights")
    copy = copy_path(copies_dir(tmp_path / "weights"), sha256_of(raft_file))
    assert copy.is_file()  # the pickle was read by the limited child and kept as safetensors
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)  # sides that are not multiples of 8
    second = np.roll(first, 2, axis=1)
    computed = flow(Image.fromarray(first), Image.fromarray(second))
    assert computed.shape == (37, 45, 2) and computed.dtype == np.float32 and np.isfinite(computed).all()
    again = load_raft(str(raft_file), weights_dir=tmp_path / "weights")(first, second)
    assert np.array_equal(again, computed)  # the same weights, the same flow


def test_a_file_that_is_not_raft_and_missing_weights_are_one_sentence(tmp_path: Path) -> None:
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, other)
    with pytest.raises(CheckpointError) as refused:
        load_raft(str(other), weights_dir=tmp_path / "weights")
    assert str(refused.value) == ("other.pth is not a RAFT checkpoint (torchvision's raft_small or raft_large state "
                                  "dict); give one of those, or use --flow dis.")
    with pytest.raises(WeightsError) as missing:
        load_raft("raft_small", weights_dir=tmp_path / "empty", offline=True)
    assert "raft_small" in str(missing.value) and str(tmp_path / "empty") in str(missing.value)


def test_a_restyle_with_raft_flow_keeps_the_network_in_its_flow_key(tiny_pipeline, tiny_files, raft_file: Path,
                                                                   tmp_path: Path) -> None:
    clip = tmp_path / "clip"
    clip.mkdir()
    texture = np.random.default_rng(2).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    for index in range(3):
        Image.fromarray(texture[:, index * 4:index * 4 + 32]).save(clip / f"{index}.png")
    config = animation_config(tiny_files, frames=None, steps_per_frame=1,
                              restyle={"video_init": str(clip), "flow": "raft", "flow_model": str(raft_file)})
    folder = animate(tiny_pipeline, config, tmp_path / "out").folder
    assert len(frames_of(folder)) == 3
    key = json.loads((folder / "flows" / "flows.json").read_text())
    assert key["method"] == "raft" and key["model"] == str(raft_file)
    assert json.loads((folder / "run.json").read_text())["metrics"]["warping_error"] > 0
