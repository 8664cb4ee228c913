"""Leaner drop-in layers for differentiating through a frozen open_clip image tower.

CLIP guidance runs CLIP forward and backward on a batch of cutouts every step, with no
gradient for CLIP's own weights. Two of open_clip's layers do more work and keep more memory
than that needs; :func:`make_lean` swaps them in place for layers with the same parameters
and the same values:

* ``QuickGELU`` (``x * sigmoid(1.702 x)``): autograd keeps both ``x`` and the sigmoid for the
  backward pass; :class:`LeanQuickGELU` keeps only ``x`` and recomputes the sigmoid.
* ``nn.MultiheadAttention`` in batch-first self-attention: it transposes its input to
  sequence-first and projects that strided view, which turns the q/k/v projection into a
  batched matmul over a broadcast copy of the weight (50 copies of a 768x2304 matrix per
  layer for ViT-B/32 under bf16 on the CPU); :class:`LeanSelfAttention` projects the
  batch-first input with one matrix product and calls the fused attention kernel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU
from torch import nn


class _QuickGELUFunction(torch.autograd.Function):
    """``x * sigmoid(1.702 x)`` keeping only ``x`` for the backward pass (autograd would keep
    the sigmoid too): a fifth less activation memory in a ViT's MLPs, for one recomputed
    sigmoid."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * torch.sigmoid(1.702 * x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        gate = torch.sigmoid(1.702 * x)
        return grad * (gate + 1.702 * x * gate * (1 - gate))


class LeanQuickGELU(nn.Module):
    """open_clip's QuickGELU, same values, less memory in backward (see :class:`_QuickGELUFunction`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _QuickGELUFunction.apply(x)


class LeanSelfAttention(nn.MultiheadAttention):
    """A batch-first ``nn.MultiheadAttention`` computed without its sequence-first detour.

    Made from an existing module with :meth:`from_module`, keeping its parameters under the
    same names. Self-attention (``query is key is value``) without returned weights takes the
    lean path; any other call is ``nn.MultiheadAttention``'s own.
    """

    @classmethod
    def from_module(cls, attention: nn.MultiheadAttention) -> LeanSelfAttention:
        """The same module (same parameter objects and names), with the lean forward."""
        lean = cls.__new__(cls)
        lean.__dict__ = dict(attention.__dict__)
        return lean

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: Any = None,
                need_weights: bool = True, attn_mask: torch.Tensor | None = None,
                **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if need_weights or key_padding_mask is not None or kwargs or not (query is key is value) \
                or query.dim() != 3 or (self.training and self.dropout > 0):
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, **kwargs)
        batch, length, width = query.shape
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)  # (B, L, 3E)
        q, k, v = qkv.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, L, E/H)
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, L, E/H)
        return self.out_proj(mixed.transpose(1, 2).reshape(batch, length, width)), None


def make_lean(model: nn.Module) -> nn.Module:
    """``model`` with every QuickGELU replaced by :class:`LeanQuickGELU` and every batch-first
    self-attention ``nn.MultiheadAttention`` wrapped in :class:`LeanSelfAttention` (in place)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, QuickGELU):
                setattr(parent, name, LeanQuickGELU())
            elif type(child) is nn.MultiheadAttention and child.batch_first and child._qkv_same_embed_dim:
                setattr(parent, name, LeanSelfAttention.from_module(child))
    return model
