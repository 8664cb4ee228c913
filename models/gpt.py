"""GPT over VQGAN codebook indices: the transformer prior of "Taming Transformers for
High-Resolution Image Synthesis" (Esser, Rombach and Ommer, CVPR 2021, arXiv:2012.09841),
which is minGPT (Karpathy) with separate key/query/value projections.

Parameter names are those of the official checkpoints under ``transformer.``: ``tok_emb``,
``pos_emb``, ``blocks.N.ln1/ln2``, ``blocks.N.attn.key/query/value/proj``, ``blocks.N.mlp.0``
and ``mlp.2``, ``ln_f``, ``head``, plus the persistent ``blocks.N.attn.mask`` buffers, so
official state dicts load with ``strict=True``. Attention runs through
``scaled_dot_product_attention``; a :class:`KVCache` makes incremental decoding cost one
token per step, and :meth:`GPT.forward_at` is the same step with every shape fixed (the new
position is a tensor), which a CUDA graph can capture once and replay for every position.
Inference only: no dropout, no loss.

Mixed precision without autocast: :func:`with_linear_dtype` gives a copy whose ``nn.Linear``
weights are in a half dtype while embeddings, norms and the residual stream stay float32;
each projection casts its input to its weight's dtype. So the precision of a forward pass is
a property of the model, not of per-thread autocast state.
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
        # zeros, not empty: the fixed-shape step attends over every slot (masking those not yet
        # written), and a masked slot holding NaN would still poison the weighted sum
        self.keys = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nh, T_max, hs)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def max_length(self) -> int:
        return self.keys.shape[3]


def project(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` computed in the dtype of the layer's weight (``x`` is cast to it).

    A single row on the CPU goes through a matrix-vector product, which streams half-precision
    weights about 1.4x faster there than the matrix-matrix kernel does (measured in bf16).
    """
    weight, bias = layer.weight, layer.bias
    x = x.to(weight.dtype)
    if x.device.type == "cpu" and x.numel() == x.shape[-1]:
        flat = x.reshape(-1)  # (C_in,)
        y = torch.mv(weight, flat) if bias is None else torch.addmv(bias, weight, flat)  # (C_out,)
        return y.view(*x.shape[:-1], -1)
    return F.linear(x, weight, bias)


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

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, c = x.shape
        x = x.to(self.query.weight.dtype)
        return tuple(project(layer, x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
                     for layer in (self.query, self.key, self.value))

    def forward(self, x: torch.Tensor, start: int = 0, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self._heads(x)
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
        return project(self.proj, y.transpose(1, 2).reshape(b, t, c))  # (B, T, C)

    def forward_at(self, x: torch.Tensor, position: torch.Tensor, cache: KVCache, layer: int,
                   allowed: torch.Tensor) -> torch.Tensor:
        """One new position per sequence, with fixed shapes: its keys and values are written
        at ``position`` (a (1,) int64 tensor on the device) and it attends over the whole cache,
        with ``allowed`` (1, 1, 1, T_max) masking the slots after ``position``."""
        b, t, c = x.shape  # t == 1
        q, k, v = self._heads(x)
        keys, values = cache.keys[layer], cache.values[layer]  # (B, nh, T_max, hs)
        keys.index_copy_(2, position, k)
        values.index_copy_(2, position, v)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)  # (B, nh, 1, hs)
        return project(self.proj, y.transpose(1, 2).reshape(b, t, c))  # (B, 1, C)


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

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return project(self.mlp[2], self.mlp[1](project(self.mlp[0], x)))  # (B, T, C), in the weights' dtype

    def forward(self, x: torch.Tensor, start: int = 0, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), start, cache, layer)  # the residual stream keeps x's dtype
        return x + self._mlp(self.ln2(x))

    def forward_at(self, x: torch.Tensor, position: torch.Tensor, cache: KVCache, layer: int,
                   allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attn.forward_at(self.ln1(x), position, cache, layer, allowed)
        return x + self._mlp(self.ln2(x))


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
        return project(self.head, self.ln_f(x))  # (B, T, vocab)

    def forward_at(self, idx: torch.Tensor, position: torch.Tensor, cache: KVCache,
                   slots: torch.Tensor) -> torch.Tensor:
        """Logits of one new token per sequence at a position given as a tensor: the cached
        step with every shape fixed and no host synchronisation, so one CUDA graph serves
        every position. ``cache.length`` is neither read nor advanced.

        Args:
            idx: (B, 1) token indices at ``position``.
            position: (1,) int64 on the model's device, below ``cache.max_length``.
            cache: holds every earlier position; zeros (or any finite values) after it.
            slots: ``torch.arange(cache.max_length)`` on the device.

        Returns:
            (B, vocab_size) logits.
        """
        allowed = (slots <= position).view(1, 1, 1, -1)  # (1, 1, 1, T_max)
        x = self.tok_emb(idx) + self.pos_emb.index_select(1, position)  # (B, 1, C)
        for layer, block in enumerate(self.blocks):
            x = block.forward_at(x, position, cache, layer, allowed)
        return project(self.head, self.ln_f(x))[:, 0]  # (B, vocab)


def with_linear_dtype(gpt: GPT, dtype: torch.dtype | None) -> GPT:
    """``gpt`` with its ``nn.Linear`` weights in ``dtype`` (None or the current dtype: ``gpt``
    itself). The copy shares the embeddings, norms and mask buffers with ``gpt``, which stay
    float32 as does the residual stream; attention and the key/value cache run in ``dtype``,
    as under autocast, but nothing is cast per step and no per-thread state is involved."""
    linears = {f"{name}.{kind}" for name, module in gpt.named_modules() if isinstance(module, nn.Linear)
               for kind in ("weight", "bias") if getattr(module, kind) is not None}
    if dtype is None or all(tensor.dtype == dtype for key, tensor in gpt.state_dict().items() if key in linears):
        return gpt
    state = {key: tensor.to(dtype) if key in linears else tensor for key, tensor in gpt.state_dict().items()}
    with torch.device("meta"):
        copy = GPT(gpt.config)
    copy.load_state_dict(state, strict=True, assign=True)
    return copy.eval().requires_grad_(False)


def linear_dtype(gpt: nn.Module) -> torch.dtype:
    """The dtype the projections (and so attention and the key/value cache) compute in."""
    return next(module.weight.dtype for module in gpt.modules() if isinstance(module, nn.Linear))
