"""A tiny CLIP saved in the official open_clip format, for tests that need no real weights.

``write_tiny_clip(dir)`` writes ``tiny-clip.json`` (an open_clip model config) and
``tiny-clip.pt`` (the state dict of a seeded random model built from it);
``load_clip(config_path, weights_path)`` loads them. ``tiny_clip(dir)`` does both. The text
tower uses the real BPE tokenizer (77 tokens); the image tower takes 32x32 images.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file

from generator.text_to_image.clip import ClipModel
from generator.text_to_image.loader import load_clip

TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_clip_module(seed: int = 0, config: Mapping[str, Any] | None = None,
                     quick_gelu: bool | None = None) -> open_clip.CLIP:
    """A seeded random open_clip ``CLIP`` built from ``config`` (default TINY_CLIP_CONFIG), in
    eval mode; ``quick_gelu`` overrides the config's. The global RNG is left untouched."""
    cfg = copy.deepcopy(dict(config or TINY_CLIP_CONFIG))
    if quick_gelu is not None:
        cfg["quick_gelu"] = quick_gelu
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.CLIP(**cfg).eval()


def write_tiny_clip(directory: Path, *, name: str = "tiny-clip", seed: int = 0, fmt: str = "pt",
                    config: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.<fmt>`` (fmt "pt" via torch.save, or "safetensors").

    Args:
        config: the model config to use instead of TINY_CLIP_CONFIG (e.g. another width).

    Returns:
        (config_path, weights_path).
    """
    if fmt not in ("pt", "safetensors"):
        raise ValueError(f"fmt must be 'pt' or 'safetensors', not {fmt!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = dict(config or TINY_CLIP_CONFIG)
    config_path = directory / f"{name}.json"
    config_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    state = {k: v.detach().clone().contiguous() for k, v in tiny_clip_module(seed, cfg).state_dict().items()}
    weights_path = directory / f"{name}.{fmt}"
    if fmt == "pt":
        torch.save(state, weights_path)
    else:
        save_file(state, str(weights_path))
    return config_path, weights_path


def tiny_clip(directory: Path, *, name: str = "tiny-clip", seed: int = 0, fmt: str = "pt",
              config: Mapping[str, Any] | None = None, **load_kwargs: Any) -> ClipModel:
    """Write a tiny CLIP into ``directory`` and load it with ``load_clip(**load_kwargs)``."""
    config_path, weights_path = write_tiny_clip(directory, name=name, seed=seed, fmt=fmt, config=config)
    return load_clip(config_path, weights_path, **load_kwargs)
