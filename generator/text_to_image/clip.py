"""A frozen CLIP for guidance: an open_clip network with its tokenizer, input size and
normalisation read back from the built model (never from constants). Loading is
:mod:`generator.text_to_image.loader`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU
from torch import nn

from generator.errors import ConfigError
from generator.text_to_image.clip_lean import LeanQuickGELU, make_lean


class ClipModel:
    """A frozen open_clip model (eval mode, no gradients to its parameters) with its tokenizer.

    Attributes:
        name: ``<architecture>/<weights>``, e.g. ``ViT-B-32/openai``.
        input_size: side of the square images :meth:`encode_image` takes.
        mean, std: per-channel normalisation the model was trained with.
        embed_dim: size of the joint embedding.
        quick_gelu: whether the network uses QuickGELU (as OpenAI-trained weights need).
        model, tokenizer, device: the open_clip module, its tokenizer, where it lives.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str, embed_dim: int):
        self.model = make_lean(model.eval().requires_grad_(False))
        self.tokenizer = tokenizer
        self.name = name
        self.embed_dim = int(embed_dim)
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = getattr(model.visual, "image_size", cfg.get("size"))
        sides = tuple(size) if isinstance(size, list | tuple) else (size, size)
        if len(set(sides)) != 1:
            raise ConfigError(f"{name} takes {sides[0]}x{sides[1]} images; only square CLIP inputs are supported.")
        self.input_size = int(sides[0])
        self.mean = tuple(float(v) for v in cfg["mean"])
        self.std = tuple(float(v) for v in cfg["std"])
        self.quick_gelu = any(isinstance(m, QuickGELU | LeanQuickGELU) for m in model.modules())
        self.device = next(model.parameters()).device
        self._mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return f"ClipModel({self.name!r}, input_size={self.input_size}, device={self.device})"

    def to(self, device: str | torch.device) -> ClipModel:
        """Move the model to ``device``; returns self."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
        return self

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights, in which the network computes (outside autocast)."""
        return next(self.model.parameters()).dtype

    def to_dtype(self, dtype: torch.dtype) -> ClipModel:
        """Keep the weights in ``dtype`` (rounding them; float32 again needs a reload); returns self.

        On the CPU a bf16 CLIP runs about twice as fast as float32 where the CPU has bf16
        units, and with half the memory, while bf16 autocast is slower than float32 there
        (it casts every weight on every call).
        """
        self.model.to(dtype)
        return self

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) float32 unit-norm embeddings of ``texts`` (no gradients)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("encode_text needs at least one text.")
        with torch.no_grad():
            tokens = self.tokenizer(texts).to(self.device)
            return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) images in [0, 1], S = input_size -> (N, D) float32 unit-norm embeddings.

        Differentiable with respect to ``images``; normalised with the model's mean/std here.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode_image takes (N, 3, H, W) images, not {tuple(images.shape)}.")
        if images.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"{self.name} takes {self.input_size}x{self.input_size} images, not "
                f"{images.shape[-2]}x{images.shape[-1]}; resize the cutouts to {self.input_size}."
            )
        features = self.model.encode_image(((images - self._mean) / self._std).to(self.dtype))
        return F.normalize(features.float(), dim=-1)
