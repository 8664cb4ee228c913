"""VQGAN, the first-stage autoencoder of "Taming Transformers for High-Resolution Image
Synthesis" (Esser, Rombach and Ommer, CVPR 2021, arXiv:2012.09841).

An encoder maps an image to a grid of latents, a quantiser snaps each latent to its nearest
codebook entry, and a decoder maps the quantised grid back to an image. Module and parameter
names are those of the official ``taming-transformers`` checkpoints
(``encoder.down.0.block.0.norm1.weight``, ``quantize.embedding.weight``, ...), so their state
dicts load with ``strict=True``. Only inference is defined here: no loss, discriminator or
training step.

Images enter and leave these modules in [-1, 1], as upstream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

QUANTIZERS = ("vq", "gumbel")


@dataclass(frozen=True)
class VQGANConfig:
    """Architecture of a VQGAN.

    Field names are those of an upstream ``model.yaml`` (``params.embed_dim``,
    ``params.n_embed`` and every key of ``params.ddconfig``), plus ``quantizer`` (which
    upstream encodes in the ``target`` class: ``VQModel`` is ``"vq"``, ``GumbelVQ`` is
    ``"gumbel"``) and ``norm_num_groups`` (upstream hard-codes 32; tests build narrow models).
    ``resolution`` is the training resolution: it decides where attention sits, not which
    image sizes the model accepts.
    """

    embed_dim: int = 256
    n_embed: int = 16384
    double_z: bool = False
    z_channels: int = 256
    resolution: int = 256
    in_channels: int = 3
    out_ch: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0
    quantizer: str = "vq"
    norm_num_groups: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        if self.quantizer not in QUANTIZERS:
            raise ValueError(
                f"quantizer must be one of {', '.join(QUANTIZERS)}, not {self.quantizer!r}."
            )
        if self.double_z:
            raise ValueError(
                "double_z=True describes a KL autoencoder, not a VQGAN; "
                "use the VQGAN's own config (double_z: false)."
            )
        if not self.ch_mult or min(self.ch_mult) < 1:
            raise ValueError(f"ch_mult must be a non-empty list of positive integers, not {self.ch_mult}.")
        for width in {self.ch * m for m in (1, *self.ch_mult)}:
            if width % self.norm_num_groups:
                raise ValueError(
                    f"channel width {width} is not divisible by norm_num_groups="
                    f"{self.norm_num_groups}; choose ch and ch_mult accordingly."
                )
        if self.quantizer == "gumbel" and self.embed_dim != self.z_channels:
            raise ValueError(
                "a Gumbel VQGAN needs embed_dim == z_channels "
                f"(got {self.embed_dim} and {self.z_channels})."
            )

    @property
    def num_resolutions(self) -> int:
        return len(self.ch_mult)

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent cell along each side (16 for the ImageNet f16 models)."""
        return 2 ** (self.num_resolutions - 1)

    def level_has_attention(self, level: int) -> bool:
        """Whether resolution level ``level`` (0 = full size) holds attention blocks."""
        return self.resolution // 2**level in self.attn_resolutions

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (lists instead of tuples)."""
        out = asdict(self)
        out["ch_mult"] = list(self.ch_mult)
        out["attn_resolutions"] = list(self.attn_resolutions)
        return out

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


def _normalize(channels: int, num_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=num_groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and swish, plus a 1x1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, num_groups: int):
        super().__init__()
        self.norm1 = _normalize(in_channels, num_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _normalize(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, C_out, H, W)
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions, with a residual."""

    def __init__(self, channels: int, num_groups: int):
        super().__init__()
        self.norm = _normalize(channels, num_groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        # (B, C, H, W) -> (B, 1, H*W, C): one head over every position, scale 1/sqrt(C)
        # contiguous, so the fused (flash / memory-efficient) kernels apply in any memory format
        q, k, v = (t(normed).reshape(b, 1, c, h * w).transpose(2, 3).contiguous() for t in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v)  # (B, 1, H*W, C)
        attended = attended.transpose(2, 3).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.proj_out(attended)


class Downsample(nn.Module):
    """Halve the size with a stride-2 3x3 convolution after padding right and bottom by one."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Double the size (nearest neighbour), then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class _Level(nn.Module):
    """One resolution level: ``block``, ``attn`` and an optional resampler (upstream layout)."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module]):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)


class _Middle(nn.Module):
    def __init__(self, channels: int, dropout: float, num_groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, num_groups)
        self.attn_1 = AttnBlock(channels, num_groups)
        self.block_2 = ResnetBlock(channels, channels, dropout, num_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def _run_level(level: _Level, h: torch.Tensor) -> torch.Tensor:
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn) > 0:
            h = level.attn[i](h)
    return h


class Encoder(nn.Module):
    """Image (B, in_channels, H, W) -> latent (B, z_channels, H/f, W/f)."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        groups = config.norm_num_groups
        self.conv_in = nn.Conv2d(config.in_channels, config.ch, 3, padding=1)
        self.down = nn.ModuleList()
        width = config.ch
        for level, mult in enumerate(config.ch_mult):
            blocks, attns = [], []
            for _ in range(config.num_res_blocks):
                blocks.append(ResnetBlock(width, config.ch * mult, config.dropout, groups))
                width = config.ch * mult
                if config.level_has_attention(level):
                    attns.append(AttnBlock(width, groups))
            stage = _Level(blocks, attns)
            if level != config.num_resolutions - 1:
                stage.downsample = Downsample(width)
            self.down.append(stage)
        self.mid = _Middle(width, config.dropout, groups)
        self.norm_out = _normalize(width, groups)
        self.conv_out = nn.Conv2d(width, config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, ch, H, W)
        for stage in self.down:
            h = _run_level(stage, h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)  # halves H and W at every level but the last
        h = self.mid(h)  # (B, ch * ch_mult[-1], H/f, W/f)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, z_channels, H/f, W/f)


class Decoder(nn.Module):
    """Latent (B, z_channels, h, w) -> image (B, out_ch, h*f, w*f), roughly in [-1, 1].

    ``up`` is stored in level order 0..L-1 (as upstream) but run from the coarsest level.
    """

    def __init__(self, config: VQGANConfig):
        super().__init__()
        groups = config.norm_num_groups
        width = config.ch * config.ch_mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, width, 3, padding=1)
        self.mid = _Middle(width, config.dropout, groups)
        levels: list[_Level] = []
        for level in reversed(range(config.num_resolutions)):
            blocks, attns = [], []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResnetBlock(width, config.ch * config.ch_mult[level], config.dropout, groups))
                width = config.ch * config.ch_mult[level]
                if config.level_has_attention(level):
                    attns.append(AttnBlock(width, groups))
            stage = _Level(blocks, attns)
            if level != 0:
                stage.upsample = Upsample(width)
            levels.insert(0, stage)
        self.up = nn.ModuleList(levels)
        self.norm_out = _normalize(width, groups)
        self.conv_out = nn.Conv2d(width, config.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor, recomputed_levels: int = 0) -> torch.Tensor:
        """``recomputed_levels``: how many of the finest levels keep only their blocks' inputs
        for the backward pass and recompute the rest (activation checkpointing). The big
        activations live there, so this trades a second forward pass of those levels for most
        of the decoder's memory when gradients flow back to the latent."""
        h = self.mid(self.conv_in(z))  # (B, ch * ch_mult[-1], h, w)
        recompute = recomputed_levels > 0 and torch.is_grad_enabled()
        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            if recompute and level < recomputed_levels:
                h = _recomputed_level(stage, h)
            else:
                h = _run_level(stage, h)
                if hasattr(stage, "upsample"):
                    h = stage.upsample(h)  # doubles H and W at every level but the first
        if recompute:
            return checkpoint(self._finish, h, use_reentrant=False)
        return self._finish(h)

    def _finish(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, out_ch, h*f, w*f)


def _recomputed_level(level: _Level, h: torch.Tensor) -> torch.Tensor:
    """:func:`_run_level` (and the level's upsampling) keeping only each block's input."""
    for i, block in enumerate(level.block):
        h = checkpoint(block, h, use_reentrant=False)
        if len(level.attn) > 0:
            h = checkpoint(level.attn[i], h, use_reentrant=False)
    if hasattr(level, "upsample"):
        h = checkpoint(level.upsample, h, use_reentrant=False)  # (B, C, 2H, 2W)
    return h


class Quantized(NamedTuple):
    """What a quantiser returns for a latent ``z`` of shape (B, C, h, w)."""

    z_q: torch.Tensor
    """(B, C, h, w) nearest codebook vectors; carries no gradient."""
    indices: torch.Tensor
    """(B, h, w) int64 codebook indices."""
    z_st: torch.Tensor
    """(B, C, h, w) straight-through output: the values of ``z_q``, the gradient of ``z``."""


def nearest_code_indices(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (squared L2) for every cell of ``z``.

    Args:
        z: (B, C, h, w) latents.
        codebook: (n_embed, C) code vectors.

    Returns:
        (B, h, w) int64 indices. Distances are computed in float32 even under autocast,
        and in row chunks so that memory stays bounded for large grids.
    """
    b, c, h, w = z.shape
    with torch.autocast(device_type=z.device.type, enabled=False):
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, c).float()  # (B*h*w, C)
        codes = codebook.detach().float()  # (n_embed, C)
        code_sq = codes.pow(2).sum(dim=1)  # (n_embed,)
        rows_per_chunk = max(1, (1 << 24) // codes.shape[0])
        chunks = []
        for part in flat.split(rows_per_chunk):
            dist = part.pow(2).sum(dim=1, keepdim=True) + code_sq - 2.0 * part @ codes.T  # (n, n_embed)
            chunks.append(dist.argmin(dim=1))
    return torch.cat(chunks).view(b, h, w)


def _lookup(codebook: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return F.embedding(indices, codebook).permute(0, 3, 1, 2).contiguous()  # (B, C, h, w)


def _quantized(z: torch.Tensor, codebook: torch.Tensor) -> Quantized:
    indices = nearest_code_indices(z, codebook)
    z_q = _lookup(codebook, indices).to(z.dtype)
    return Quantized(z_q=z_q, indices=indices, z_st=z + (z_q - z).detach())


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook (upstream ``VectorQuantizer2``, inference part)."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embedding.weight  # (n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> Quantized:
        return _quantized(z, self.codebook)


class GumbelQuantizer(nn.Module):
    """Quantiser of the Gumbel-softmax VQGAN (upstream ``GumbelQuantize``; OpenImages f8).

    Upstream picks a code by sampling a hard Gumbel-softmax over ``proj`` logits, even at
    evaluation, so its encoding is random. Here ``code_indices`` takes the argmax of the
    logits (the noiseless mode of that sample) and ``forward`` snaps a latent that already
    lives in the embedding space to its nearest ``embed`` row, as VQGAN+CLIP does.
    """

    def __init__(self, z_channels: int, n_embed: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(z_channels, n_embed, 1)
        self.embed = nn.Embedding(n_embed, embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embed.weight  # (n_embed, embed_dim)

    def code_indices(self, h: torch.Tensor) -> torch.Tensor:
        """(B, z_channels, h, w) pre-quantisation features -> (B, h, w) code indices."""
        return self.proj(h).argmax(dim=1)

    def forward(self, z: torch.Tensor) -> Quantized:
        return _quantized(z, self.codebook)


class VQGAN(nn.Module):
    """The Taming Transformers VQGAN (``VQModel`` or ``GumbelVQ``) for inference; it implements
    the decoder protocol every stage depends on (``generator.decoder.protocol.Decoder``).

    Example:
        >>> model = VQGAN(VQGANConfig(ch=8, ch_mult=(1, 2), z_channels=4, embed_dim=4,
        ...                           n_embed=16, attn_resolutions=(), norm_num_groups=4))
        >>> z = model.encode(torch.zeros(1, 3, 32, 32))       # (1, 4, 16, 16)
        >>> z_q, indices, z_st = model.quantize(z)
        >>> image = model.decode(z_q)                            # (1, 3, 32, 32) in [-1, 1]
    """

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if config.quantizer == "gumbel":
            self.quantize: VectorQuantizer | GumbelQuantizer = GumbelQuantizer(
                config.z_channels, config.n_embed, config.embed_dim
            )
        else:
            self.quantize = VectorQuantizer(config.n_embed, config.embed_dim)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    @property
    def codebook(self) -> torch.Tensor:
        """(n_embed, embed_dim) code vectors."""
        return self.quantize.codebook

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent cell along each side."""
        return self.config.downsample_factor

    @property
    def n_codes(self) -> int:
        """Codebook entries (upstream ``n_embed``)."""
        return self.config.n_embed

    @property
    def code_dim(self) -> int:
        """Channels of a latent cell (upstream ``embed_dim``)."""
        return self.config.embed_dim

    @property
    def image_channels(self) -> int:
        """Channels of the images it encodes (3, or the classes of a segmentation map)."""
        return self.config.in_channels

    @property
    def decode_levels(self) -> int:
        """Resolution levels of the decoder (upstream ``len(ch_mult)``)."""
        return self.config.num_resolutions

    def latent_grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) latent cells of an image of ``size`` (width, height)."""
        width, height = size
        return height // self.downsample_factor, width // self.downsample_factor

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> latent (B, embed_dim, H/f, W/f) in codebook space.

        For the vector-quantised models this is the continuous pre-quantisation latent. For
        the Gumbel model it is the embedding of the most likely code at every cell.
        """
        h = self.quant_conv(self.encoder(x))  # (B, embed_dim, H/f, W/f)
        if isinstance(self.quantize, GumbelQuantizer):
            return _lookup(self.codebook, self.quantize.code_indices(h)).to(h.dtype)
        return h

    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> code indices (B, H/f, W/f)."""
        h = self.quant_conv(self.encoder(x))
        if isinstance(self.quantize, GumbelQuantizer):
            return self.quantize.code_indices(h)
        return nearest_code_indices(h, self.codebook)

    def decode(self, z_q: torch.Tensor, recomputed_levels: int = 0) -> torch.Tensor:
        """Quantised latent (B, embed_dim, h, w) -> image (B, 3, h*f, w*f), roughly in [-1, 1].

        ``recomputed_levels`` trades time for memory in the backward pass (see :class:`Decoder`).
        """
        return self.decoder(self.post_quant_conv(z_q), recomputed_levels)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> image (B, 3, h*f, w*f), roughly in [-1, 1]."""
        return self.decode(self.indices_to_latent(indices))

    def indices_to_latent(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> quantised latent (B, embed_dim, h, w)."""
        return _lookup(self.codebook, indices)
