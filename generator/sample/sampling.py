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

Both take an optional ``keep`` mask of cells whose token in ``tokens`` is kept (an image being
edited): there nothing is drawn, the token already there is fed as context, and once no drawn
cell is left nothing is computed at all. The recompute and sliding paths run the transformer
only for drawn cells; the cached path feeds every kept token to the cache, one step each.

:func:`sample_rows` picks the strategy for a prior and a grid; :func:`prior_codes` samples
one grid as the starting point of a text-to-image run.

Precision is explicit, never ambient: the functions take the dtype of the transformer's
projections (:func:`prior_dtype` says which one ``--precision`` means) and run every forward
pass with autocast off, so nothing per-thread stays set while a generator is suspended at a
``yield`` (a web server resumes runs on other threads). Non-finite logits stop sampling with
:class:`NonFiniteLogitsError` before they reach ``torch.multinomial``, whose device-side
assert would take the whole CUDA context down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from generator.devices import cpu_has_native_bf16, cuda_half_dtype
from generator.errors import GeneratorError, InputError
from generator.events import Event, Progress
from generator.sample.conditioning import coordinate_tokens, start_tokens
from generator.sample.fixed_step import CachedStep, FixedStep
from generator.sample.loader import Prior
from models.gpt import GPT, linear_dtype, with_linear_dtype

logger = logging.getLogger(__name__)


class NonFiniteLogitsError(GeneratorError):
    """The transformer gave logits that are not numbers (NaN or infinite), so no token can be drawn."""


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
    logits = logits.float()
    if settings.temperature != 1.0:
        logits = logits / settings.temperature
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


class Draws:
    """:func:`draw` that never hands ``torch.multinomial`` a non-finite row.

    A row of logits with a NaN or an infinity is drawn from as if uniform and remembered on
    the device; :meth:`check` (once per finished row of the image, where the caller waits for
    the device anyway) raises if any was. So a GPU is not asked to synchronise every token.
    """

    def __init__(self, settings: SamplingSettings, generator: torch.Generator, dtype: torch.dtype):
        self.settings, self.generator, self.dtype = settings, generator, dtype
        self._bad: torch.Tensor | None = None  # (B, 1) bool: a sequence met non-finite logits

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """One token per row of (B, V) logits -> (B,) int64."""
        finite = torch.isfinite(logits).all(dim=-1, keepdim=True)  # (B, 1)
        tokens = draw(torch.where(finite, logits, 0.0), self.settings, self.generator)
        self._bad = ~finite if self._bad is None else self._bad.logical_or_(~finite)
        return tokens

    def check(self, row: int) -> None:
        """Raise :class:`NonFiniteLogitsError` if any logits since the last check were not finite."""
        bad, self._bad = self._bad, None
        if bad is not None and bool(bad.any()):
            name = str(self.dtype).removeprefix("torch.")
            raise NonFiniteLogitsError(
                f"the transformer's logits stopped being numbers (NaN or infinite) in {name} at row {row + 1}, so "
                "sampling stopped; run again with --precision fp32, and if float32 fails too, the transformer's "
                "weights are damaged."
            )


def prior_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype of the prior's projections for ``precision`` on ``device`` (None: float32).

    ``auto`` is each GPU's native half precision (:func:`cuda_half_dtype`). On the CPU it is
    bf16 where the CPU computes bf16 in hardware: streaming half the bytes per token made
    cached sampling 1.6x faster at batch 1 and 2.8x at batch 16 on a 2-core CPU with AMX
    (FFHQ width, BENCHMARKS.md), with the top-1 token unchanged at almost every position.
    Elsewhere float32. fp16 is for GPUs only.
    """
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) or cuda_half_dtype(device)
    if precision == "fp16":
        logger.info("precision fp16 is for GPUs; the prior runs in float32 on the CPU")
        return None
    if precision == "bf16" or cpu_has_native_bf16():
        return torch.bfloat16
    return None


def window_step(gpt: GPT, batch: int, max_length: int) -> FixedStep | None:
    """The CUDA-graph step for cached sampling where it pays: on CUDA at batch 1 (where a step
    is bound by kernel launches), unless deterministic algorithms are requested (their
    ``index_copy_`` is not known to be capturable). None: the ordinary cached step."""
    if gpt.pos_emb.device.type != "cuda" or batch != 1 or torch.are_deterministic_algorithms_enabled():
        return None
    return FixedStep(gpt, batch, max_length, graph=True)


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
    dtype: torch.dtype | None = None,
    step: FixedStep | None = None,
    keep: torch.Tensor | None = None,
) -> Iterator[int]:
    """Fill ``tokens[:, start:]`` (B, H*W) in raster order, conditioned on ``cond`` (B, Lc).

    Args:
        dtype: the projections' dtype (None: the model's own); the key/value cache follows it.
        step: the fixed-shape step (a CUDA graph, see :func:`window_step`) to decode with
            instead of the ordinary cached step; it must hold ``Lc + H*W - 1`` positions.
        keep: (H*W,) bool, the positions whose token already in ``tokens`` is kept, not drawn
            (None: every position from ``start`` is drawn).

    Yields the index of each row as it is completed.

    Raises:
        NonFiniteLogitsError: the logits of a row were not finite.
    """
    gpt = with_linear_dtype(gpt, dtype)
    batch, total = tokens.shape
    draws = Draws(settings, generator, linear_dtype(gpt))
    decoder: CachedStep | FixedStep | None = None
    if use_cache:
        decoder = step or CachedStep(gpt, batch, cond.shape[1] + total - 1)
        if (decoder.batch, decoder.max_length) != (batch, cond.shape[1] + total - 1) or decoder.dtype != draws.dtype:
            raise ValueError(f"the step decodes {decoder.batch} x {decoder.max_length} positions in {decoder.dtype}, "
                             f"not {batch} x {cond.shape[1] + total - 1} in {draws.dtype}")
        logits = decoder.prefill(torch.cat([cond, tokens[:, :start]], dim=1))  # (B, vocab)
    drawn = _drawn_positions(keep, total)
    last = max((p for p in range(start, total) if drawn[p]), default=start - 1)  # the last position drawn
    for position in range(start, total):
        if position <= last and drawn[position]:
            if decoder is None:
                with torch.autocast(tokens.device.type, enabled=False):
                    logits = gpt(torch.cat([cond, tokens[:, :position]], dim=1), last_only=True)[:, -1]
            tokens[:, position] = draws(logits)
        if decoder is not None and position < last:  # the cache needs every token before the last drawn one
            logits = decoder(tokens[:, position], cond.shape[1] + position)
        if (position + 1) % width == 0:
            draws.check(position // width)
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
    dtype: torch.dtype | None = None,
    keep: torch.Tensor | None = None,
) -> Iterator[int]:
    """Fill ``tokens`` (B, H, W) from raster position ``start`` with a sliding window.

    ``cond`` is either a spatial grid (B, H, W) whose window is cut like the image's, or a
    short token sequence (B, Lc) prepended to every window. ``dtype``: the projections' dtype
    (None: the model's own). ``keep``: (H, W) bool, the cells whose token already in
    ``tokens`` is kept (read as context by later windows, never drawn). Yields each completed row.

    Raises:
        NonFiniteLogitsError: the logits of a row were not finite.
    """
    gpt = with_linear_dtype(gpt, dtype)
    draws = Draws(settings, generator, linear_dtype(gpt))
    _, height, width = tokens.shape
    rows, cols = window
    spatial = cond.dim() == 3
    drawn = _drawn_positions(None if keep is None else keep.reshape(-1), height * width)
    for i, j, i0, j0 in sliding_order(height, width, window, start):
        if not drawn[i * width + j]:
            if j == width - 1:
                draws.check(i)
                yield i
            continue
        patch = tokens[:, i0 : i0 + rows, j0 : j0 + cols].reshape(tokens.shape[0], rows * cols)  # (B, w*w)
        prefix = cond[:, i0 : i0 + rows, j0 : j0 + cols].reshape(tokens.shape[0], rows * cols) if spatial else cond
        local = (i - i0) * cols + (j - j0)
        with torch.autocast(tokens.device.type, enabled=False):
            logits = gpt(torch.cat([prefix, patch[:, :local]], dim=1), last_only=True)
        tokens[:, i, j] = draws(logits[:, -1])
        if j == width - 1:
            draws.check(i)
            yield i


def sample_rows(prior: Prior, cond: torch.Tensor, tokens: torch.Tensor, start: int, settings: SamplingSettings,
                generator: torch.Generator, use_cache: bool = True, *, gpt: GPT | None = None,
                step: FixedStep | None = None, keep: torch.Tensor | None = None) -> Iterator[int]:
    """Fill ``tokens`` (B, H, W): with the cache when the grid is the training window, else with
    the sliding window. ``gpt``: the prior's transformer in the dtype to sample in (default:
    ``prior.gpt``); ``step``: a fixed-shape step for the cached path (:func:`window_step`);
    ``keep``: (H, W) bool, the cells whose token already in ``tokens`` is kept, not drawn.
    Yields each finished row."""
    gpt = gpt or prior.gpt
    grid = tuple(tokens.shape[1:])
    if grid == prior.spec.window:
        flat = tokens.view(tokens.shape[0], -1)
        yield from sample_in_window(gpt, cond.reshape(cond.shape[0], -1), flat, grid[1], start=start,
                                    settings=settings, generator=generator, use_cache=use_cache, step=step,
                                    keep=None if keep is None else keep.reshape(-1))
    else:
        yield from sample_sliding(gpt, cond, tokens, prior.spec.window, start=start, settings=settings,
                                  generator=generator, keep=keep)


def _drawn_positions(keep: torch.Tensor | None, total: int) -> list[bool]:
    """Per raster position, whether its token is drawn: a host list, read once (``keep`` (L,)
    bool may live on a GPU; reading it cell by cell would wait for the device every token)."""
    if keep is None:
        return [True] * total
    if keep.numel() != total:
        raise ValueError(f"keep holds {keep.numel()} cells, not the grid's {total}")
    return (~keep.bool()).reshape(-1).tolist()


def window_length(prior: Prior, cond: torch.Tensor, grid: tuple[int, int]) -> int | None:
    """Positions the key/value cache holds for ``grid`` after ``cond`` (B, ...): the condition
    plus the grid, less one; None when the grid is larger than the training window (sliding
    window, no cache)."""
    if grid != prior.spec.window:
        return None
    return cond[0].numel() + grid[0] * grid[1] - 1


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
    length = window_length(prior, cond, grid)
    step = window_step(prior.gpt, 1, length) if length is not None else None
    started = time.perf_counter()
    for row in sample_rows(prior, cond, tokens, 0, settings, generator, step=step):
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
