"""Sampling codebook indices from a GPT prior.

Two strategies, both generators that yield the index of each finished row and write tokens
in place, so callers can report progress and show previews (``yield from`` forwards rows):

* :func:`sample_in_window`: the whole grid fits the block size (the training window).
  Incremental decoding with a key/value cache, one token per forward pass; with
  ``use_cache=False`` every token recomputes the whole prefix (for checking and benchmarks).
  Both draw the same random numbers, so they give identical tokens.
* :func:`sample_sliding`: grids larger than the training window. For each cell a window of
  the trained size is placed around it (``i0 = clamp(i - window // 2, 0, H - window)``), the
  same window is cut from a spatial condition grid (or the single start/class token is
  prepended), and the cell is sampled from the logits at its position in the window, as in
  taming-transformers' ``scripts/sample_conditional.py``. Only the tokens before the target
  are fed: causal attention makes the later ones irrelevant, so this is exact and cheaper.

:func:`sample_rows` picks the strategy for a prior and a grid; :func:`prior_codes` samples
one grid as the starting point of a text-to-image run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from generator.errors import InputError
from generator.events import Event, Progress
from generator.prior.conditioning import coordinate_tokens, start_tokens
from generator.prior.loader import Prior
from models.gpt import GPT, KVCache


@dataclass(frozen=True)
class SamplingSettings:
    """How a token is drawn from the logits.

    Attributes:
        temperature: logits are divided by it (lower: safer, higher: wilder).
        top_k: keep only the k most likely tokens (0: all).
        top_p: keep the smallest set of tokens whose probability reaches p (1.0: all).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


def filter_logits(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Temperature, then top-k, then nucleus (top-p) filtering of (B, V) logits."""
    logits = logits.float() / settings.temperature
    if 0 < settings.top_k < logits.shape[-1]:
        kth = torch.topk(logits, settings.top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if settings.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative > settings.top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the token that crosses p
        remove[..., 0] = False  # and always at least one
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def draw(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator) -> torch.Tensor:
    """One token per row of (B, V) logits -> (B,) int64."""
    probs = F.softmax(filter_logits(logits, settings), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def window_origin(position: int, length: int, window: int) -> int:
    """First row (or column) of the window around ``position``: ``clamp(p - w // 2, 0, L - w)``."""
    return min(max(position - window // 2, 0), length - window)


def sliding_order(height: int, width: int, window: tuple[int, int],
                  start: int = 0) -> Iterator[tuple[int, int, int, int]]:
    """(i, j, i0, j0) for every cell from raster position ``start`` on, with its window origin."""
    for flat in range(start, height * width):
        i, j = divmod(flat, width)
        yield i, j, window_origin(i, height, window[0]), window_origin(j, width, window[1])


@torch.inference_mode()
def sample_in_window(
    gpt: GPT,
    cond: torch.Tensor,
    tokens: torch.Tensor,
    width: int,
    *,
    start: int,
    settings: SamplingSettings,
    generator: torch.Generator,
    use_cache: bool = True,
) -> Iterator[int]:
    """Fill ``tokens[:, start:]`` (B, H*W) in raster order, conditioned on ``cond`` (B, Lc).

    Yields the index of each row as it is completed.
    """
    batch, total = tokens.shape
    device_type = tokens.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else gpt.pos_emb.dtype
    cache = KVCache(gpt.config, batch, cond.shape[1] + total - 1, device=tokens.device, dtype=dtype) \
        if use_cache else None
    if cache is not None:
        logits = gpt(torch.cat([cond, tokens[:, :start]], dim=1), cache=cache, last_only=True)
    for position in range(start, total):
        if cache is None:
            logits = gpt(torch.cat([cond, tokens[:, :position]], dim=1), last_only=True)
        tokens[:, position] = draw(logits[:, -1], settings, generator)
        if cache is not None and position + 1 < total:
            logits = gpt(tokens[:, position : position + 1], cache=cache, last_only=True)
        if (position + 1) % width == 0:
            yield position // width


@torch.inference_mode()
def sample_sliding(
    gpt: GPT,
    cond: torch.Tensor,
    tokens: torch.Tensor,
    window: tuple[int, int],
    *,
    start: int,
    settings: SamplingSettings,
    generator: torch.Generator,
) -> Iterator[int]:
    """Fill ``tokens`` (B, H, W) from raster position ``start`` with a sliding window.

    ``cond`` is either a spatial grid (B, H, W) whose window is cut like the image's, or a
    short token sequence (B, Lc) prepended to every window. Yields each completed row.
    """
    _, height, width = tokens.shape
    rows, cols = window
    spatial = cond.dim() == 3
    for i, j, i0, j0 in sliding_order(height, width, window, start):
        patch = tokens[:, i0 : i0 + rows, j0 : j0 + cols].reshape(tokens.shape[0], rows * cols)  # (B, w*w)
        prefix = cond[:, i0 : i0 + rows, j0 : j0 + cols].reshape(tokens.shape[0], rows * cols) if spatial else cond
        local = (i - i0) * cols + (j - j0)
        logits = gpt(torch.cat([prefix, patch[:, :local]], dim=1), last_only=True)
        tokens[:, i, j] = draw(logits[:, -1], settings, generator)
        if j == width - 1:
            yield i


def sample_rows(prior: Prior, cond: torch.Tensor, tokens: torch.Tensor, start: int, settings: SamplingSettings,
                generator: torch.Generator, use_cache: bool = True) -> Iterator[int]:
    """Fill ``tokens`` (B, H, W): with the cache when the grid is the training window, else with
    the sliding window. Yields each finished row."""
    grid = tuple(tokens.shape[1:])
    if grid == prior.spec.window:
        flat = tokens.view(tokens.shape[0], -1)
        yield from sample_in_window(prior.gpt, cond.reshape(cond.shape[0], -1), flat, grid[1], start=start,
                                    settings=settings, generator=generator, use_cache=use_cache)
    else:
        yield from sample_sliding(prior.gpt, cond, tokens, prior.spec.window, start=start, settings=settings,
                                  generator=generator)


def prior_codes(prior: Prior, grid: tuple[int, int], settings: SamplingSettings, generator: torch.Generator,
                class_label: int | None = None) -> Iterator[Event]:
    """Sample one (1, H, W) code grid as a starting point for CLIP guidance, yielding
    ``Progress("prior", ...)`` per row; the codes are the generator's return value."""
    check_grid(prior, grid)
    kind = prior.spec.conditioning
    if kind in ("segmentation", "depth"):
        raise InputError(f"a {kind}-conditioned prior needs a map, so it cannot start a text-to-image run; "
                         "use the sample command.")
    if kind == "coord":
        if class_label is not None:
            raise InputError("this model is conditioned on position, not a class; leave --prior-class out.")
        cond = coordinate_tokens(prior, grid, 1)
    else:
        cond = start_tokens(prior, 1, class_label, flag="--prior-class")
    tokens = torch.zeros(1, *grid, dtype=torch.long, device=prior.device)
    started = time.perf_counter()
    for row in sample_rows(prior, cond, tokens, 0, settings, generator):
        yield Progress("prior", row + 1, grid[0], time.perf_counter() - started)
    return tokens


def check_grid(prior: Prior, grid: tuple[int, int]) -> None:
    """A grid smaller than the training window cannot be sampled: one clear sentence."""
    rows, cols = prior.spec.window
    if grid[0] < rows or grid[1] < cols:
        factor = prior.vqgan.downsample_factor
        raise InputError(
            f"size {grid[1] * factor}x{grid[0] * factor} gives a {grid[0]}x{grid[1]} token grid, smaller than this "
            f"model's {rows}x{cols} training window; use at least {cols * factor}x{rows * factor}."
        )
