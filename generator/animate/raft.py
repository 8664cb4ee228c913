"""RAFT optical flow (``--flow raft``): torchvision's network with weights read through the
project's checkpoint boundary (a pickle is parsed only by the limited child and kept as a
safetensors copy), never through ``torch.hub``.

The official files are torchvision's ``raft_small_C_T_V2`` and ``raft_large_C_T_SKHT_V2`` (the
registry names ``raft_small`` and ``raft_large``); any torchvision RAFT state dict works, its
size told from its tensors. RAFT sees frames in [-1, 1] whose sides are multiples of 8 (they
are padded by repeating the edge) and at least 128 pixels (smaller ones are enlarged, and their
flow scaled back), and returns the flow after 12 refinements.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generator.errors import CheckpointError
from generator.weights import store
from generator.weights.checkpoints import read_checkpoint
from generator.weights.download import ProgressCallback

ARCHITECTURES = ("raft_small", "raft_large")
REFINEMENTS = 12
MIN_SIDE = 128
"""RAFT's smallest side: smaller frames are enlarged for it, and their flow scaled back."""


class RaftFlow:
    """A loaded RAFT network that computes the flow between two frames.

    Attributes:
        model: torchvision's RAFT, in eval mode.
        name: what was loaded (a registry name or a file name), for messages.
    """

    def __init__(self, model: torch.nn.Module, name: str):
        self.model, self.name = model, name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> RaftFlow:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, source: Image.Image | np.ndarray, target: Image.Image | np.ndarray) -> np.ndarray:
        """(H, W, 2) float32: the flow from ``source`` to ``target`` (RGB, the same size)."""
        first, second = _frame(source, self.device), _frame(target, self.device)  # (1, 3, H, W) in [-1, 1]
        height, width = first.shape[-2:]
        scale = max(1.0, MIN_SIDE / min(height, width))  # RAFT's correlation pyramid needs 128 px or more
        if scale > 1:
            size = (round(height * scale), round(width * scale))
            first, second = (F.interpolate(frame, size=size, mode="bilinear", align_corners=False)
                             for frame in (first, second))
        inner_height, inner_width = first.shape[-2:]
        pad = (0, -inner_width % 8, 0, -inner_height % 8)
        first, second = F.pad(first, pad, mode="replicate"), F.pad(second, pad, mode="replicate")
        flow = self.model(first, second, num_flow_updates=REFINEMENTS)[-1][..., :inner_height, :inner_width]
        if scale > 1:  # back to the frames' own size and pixels: (1, 2, H, W)
            flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
            factors = torch.tensor([width / inner_width, height / inner_height], device=flow.device)
            flow = flow * factors.view(1, 2, 1, 1)
        return flow[0].permute(1, 2, 0).float().cpu().numpy()  # (H, W, 2)


def _frame(image: Image.Image | np.ndarray, device: torch.device) -> torch.Tensor:
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    return (torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1).to(device)


def _network(architecture: str) -> torch.nn.Module:
    from torchvision.models.optical_flow import raft_large, raft_small

    return (raft_small if architecture == "raft_small" else raft_large)(weights=None, progress=False)


def load_raft(name_or_path: str, *, device: str | torch.device = "cpu",
              weights_dir: str | os.PathLike[str] | None = None, offline: bool | None = None,
              progress: ProgressCallback | None = None) -> RaftFlow:
    """Load RAFT by registry name (``raft_small``, ``raft_large``) or file, in eval mode on ``device``.

    Raises:
        WeightsError: missing or failed download (offline: where to put the file).
        CheckpointError: unsafe, damaged, or not a torchvision RAFT state dict.
    """
    path = store.resolve(name_or_path, kind="flow", weights_dir=weights_dir, offline=offline, progress=progress)
    state = read_checkpoint(path, weights_dir=weights_dir)
    state = state.get("state_dict", state) if isinstance(state.get("state_dict"), dict) else state
    for architecture in ARCHITECTURES:
        model = _network(architecture)
        expected = model.state_dict()
        if expected.keys() == state.keys() and all(expected[k].shape == state[k].shape for k in state):
            model.load_state_dict(state)
            return RaftFlow(model.eval().requires_grad_(False).to(device), Path(str(name_or_path)).name)
    raise CheckpointError(f"{Path(path).name} is not a RAFT checkpoint (torchvision's raft_small or raft_large "
                          "state dict); give one of those, or use --flow dis.")
