"""The decoder protocol: what guidance, animation, the prior and editing need of a first
stage (a codebook autoencoder such as Taming's VQGAN), and nothing more.

A first stage maps images to a grid of codebook vectors and back. Stages depend on this
protocol, never on a model class, so another first stage (a Gumbel or f8 VQGAN, a future
decoder) plugs in without edits to them. :class:`models.vqgan.VQGAN` implements it.

Shapes: images are (B, 3, H, W) in [-1, 1]; latents (B, code_dim, h, w) with
h = H / downsample_factor and w = W / downsample_factor; indices (B, h, w) int64.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from models.vqgan import Quantized  # the (z_q, indices, z_st) triple every quantiser returns

__all__ = ["Decoder", "Quantized"]


@runtime_checkable
class Decoder(Protocol):
    """A codebook first stage: encode, quantize, decode, and the facts of its latent grid."""

    @property
    def codebook(self) -> torch.Tensor:
        """(n_codes, code_dim) code vectors."""

    @property
    def n_codes(self) -> int:
        """Codebook entries (the vocabulary of a prior over this decoder's codes)."""

    @property
    def code_dim(self) -> int:
        """Channels of a latent cell."""

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent cell along each side."""

    @property
    def image_channels(self) -> int:
        """Channels of the images it encodes (3, or the classes of a segmentation map)."""

    @property
    def decode_levels(self) -> int:
        """Resolution levels of the decoder, the most ``decode`` may recompute in its backward pass."""

    def latent_grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) latent cells of an image of ``size`` (width, height)."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> latents in codebook space (not yet quantised)."""

    def encode_to_indices(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> code indices."""

    def quantize(self, z: torch.Tensor) -> Quantized:
        """Latents -> the nearest codes (with a straight-through latent for optimising ``z``)."""

    def decode(self, z_q: torch.Tensor, recomputed_levels: int = 0) -> torch.Tensor:
        """Quantised latents -> images; ``recomputed_levels`` trades time for backward memory."""

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices -> images."""

    def indices_to_latent(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices -> quantised latents."""

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """Move to a device, dtype or memory format (as ``torch.nn.Module.to``)."""
