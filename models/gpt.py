"""GPT over VQGAN codebook indices: the transformer prior of "Taming Transformers for
High-Resolution Image Synthesis" (Esser, Rombach and Ommer, CVPR 2021, arXiv:2012.09841),
which is minGPT (Karpathy) with separate key/query/value projections.

Parameter names are those of the official checkpoints under ``transformer.``: ``tok_emb``,
``pos_emb``, ``blocks.N.ln1/ln2``, ``blocks.N.attn.key/query/value/proj``, ``blocks.N.mlp.0``
and ``mlp.2``, ``ln_f``, ``head``, plus the persistent ``blocks.N.attn.mask`` buffers, so
official state dicts load with ``strict=True``. Attention runs through
``scaled_dot_product_attention``; a :class:`KVCache` makes incremental decoding cost one
token per step. Inference only: no dropout, no loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    """Architecture of the transformer, with the upstream ``transformer_config.params`` names.

    ``n_unmasked`` leading positions attend to each other in both directions (0 in every
    released model, which makes the mask plain causal).
    """

    vocab_size: int
    block_size: int
    n_layer: int = 12
    n_head: int = 8
    n_embd: int = 256
    n_unmasked: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)}.")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}.")
        if not 0 <= self.n_unmasked <= self.block_size:
            raise ValueError(f"n_unmasked must be between 0 and block_size, not {self.n_unmasked}.")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class KVCache:
    """Keys and values of every layer, preallocated for ``max_length`` positions.

    Args:
        config: the model's config.
        batch: sequences decoded together.
        max_length: positions to hold (at most ``block_size``).
    """

    def __init__(self, config: GPTConfig, batch: int, max_length: int, *, device: torch.device | str,
                 dtype: torch.dtype = torch.float32):
        if max_length > config.block_size:
            raise ValueError(f"a cache of {max_length} positions exceeds block_size={config.block_size}")
        shape = (config.n_layer, batch, config.n_head, max_length, config.head_dim)
        self.keys = torch.empty(shape, device=device, dtype=dtype)  # (L, B, nh, T_max, hs)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention with separate key, query and value projections."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        mask = torch.tril(torch.ones(config.block_size, config.block_size))
        mask[: config.n_unmasked, : config.n_unmasked] = 1
        self.register_buffer("mask", mask.view(1, 1, config.block_size, config.block_size))
        self.plain_causal = config.n_unmasked == 0

    def forward(self, x: torch.Tensor, start: int = 0, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (proj(x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
                   for proj in (self.query, self.key, self.value))
        if cache is not None:
            cache.keys[layer, :, :, start : start + t] = k
            cache.values[layer, :, :, start : start + t] = v
            k = cache.keys[layer, :, :, : start + t]  # (B, nh, start+T, hs)
            v = cache.values[layer, :, :, : start + t]
        if t == 1:  # one new position sees everything before it
            y = F.scaled_dot_product_attention(q, k, v)
        elif start == 0 and self.plain_causal:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            allowed = self.mask[:, :, start : start + t, : start + t].bool()  # (1, 1, T, start+T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
        )

    def forward(self, x: torch.Tensor, start: int = 0, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), start, cache, layer)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """The transformer prior.

    Example:
        >>> gpt = GPT(GPTConfig(vocab_size=16, block_size=32, n_layer=1, n_head=2, n_embd=16))
        >>> logits = gpt(torch.zeros(1, 5, dtype=torch.long))          # (1, 5, 16)
        >>> cache = KVCache(gpt.config, batch=1, max_length=32, device="cpu")
        >>> first = gpt(torch.zeros(1, 4, dtype=torch.long), cache=cache)  # prefill
        >>> step = gpt(torch.zeros(1, 1, dtype=torch.long), cache=cache)   # position 4 only
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor, *, cache: KVCache | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits for token indices.

        Args:
            idx: (B, T) token indices. With a cache they continue the cached sequence.
            cache: keys and values of earlier positions; extended in place.
            last_only: compute logits for the last position only.

        Returns:
            (B, T, vocab_size) logits, or (B, 1, vocab_size) with ``last_only``.
        """
        t = idx.shape[1]
        start = cache.length if cache is not None else 0
        if start + t > self.config.block_size:
            raise ValueError(
                f"{start + t} positions exceed the block size of {self.config.block_size}; "
                "use the sliding window for longer sequences"
            )
        x = self.tok_emb(idx) + self.pos_emb[:, start : start + t]  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, start, cache, layer)
        if cache is not None:
            cache.length = start + t
        if last_only:
            x = x[:, -1:]
        return self.head(self.ln_f(x))  # (B, T, vocab)
