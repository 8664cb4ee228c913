"""The cached one-token step of the prior with every shape fixed, replayed as a CUDA graph.

At batch 1 a cached step on a GPU is bound by kernel launches (about 15 small kernels per
layer per token), not by arithmetic. :class:`FixedStep` keeps everything a step touches in
storage that never moves: the token and its position as device tensors, a key/value cache of
the full window (``GPT.forward_at`` attends over all of it, masking the slots after the
position), and the logits. So one graph, captured once after a warm-up on a side stream,
serves every position of every batch of a run: a step is two small copies and a replay.

Capture rules kept: nothing inside the step reads a tensor on the host (the position is a
tensor, the mask is computed on the device); every tensor the graph reads or writes outside
its private pool is allocated before capture; and the random draw stays outside the graph
(``torch.multinomial`` with a generator would need the generator registered with the graph),
so tokens match the eager path draw for draw.

The same step runs eagerly anywhere (``graph=False``), which is how its results are tested on
the CPU against the ordinary cached path.
"""

from __future__ import annotations

import logging

import torch

from generator.errors import summary
from models.gpt import GPT, KVCache, linear_dtype

logger = logging.getLogger(__name__)


class CachedStep:
    """The ordinary cached step (a growing key/value cache, attention over what is filled),
    with the interface of :class:`FixedStep`.

    Args:
        gpt: the model, in the dtype it is to compute in.
        batch: sequences decoded together.
        max_length: positions the cache holds.
    """

    def __init__(self, gpt: GPT, batch: int, max_length: int):
        self.gpt, self.batch = gpt, batch
        self.cache = KVCache(gpt.config, batch, max_length, device=gpt.pos_emb.device, dtype=linear_dtype(gpt))

    @property
    def max_length(self) -> int:
        return self.cache.max_length

    @property
    def dtype(self) -> torch.dtype:
        return self.cache.keys.dtype

    @torch.inference_mode()
    def prefill(self, prefix: torch.Tensor) -> torch.Tensor:
        """Run the (B, T) prefix through the model, filling slots [0, T); its last logits (B, vocab)."""
        self.cache.length = 0
        with torch.autocast(prefix.device.type, enabled=False):
            return self.gpt(prefix, cache=self.cache, last_only=True)[:, -1]

    @torch.inference_mode()
    def __call__(self, token: torch.Tensor, position: int) -> torch.Tensor:
        """Logits (B, vocab) after feeding ``token`` (B,) at ``position`` (the next slot)."""
        if position != self.cache.length:
            raise ValueError(f"the cache holds {self.cache.length} positions; position {position} is not the next")
        with torch.autocast(token.device.type, enabled=False):
            return self.gpt(token.view(-1, 1), cache=self.cache, last_only=True)[:, -1]


class FixedStep(CachedStep):
    """One token per sequence at a time, fixed shapes, optionally a CUDA graph.

    Args:
        gpt: the model, in the dtype it is to compute in (see ``with_linear_dtype``).
        batch: sequences decoded together.
        max_length: positions the cache holds (the condition plus the grid, less one).
        graph: capture the step as a CUDA graph (CUDA only); if capture fails the step runs
            eagerly and a warning is logged.
    """

    @torch.inference_mode()
    def __init__(self, gpt: GPT, batch: int, max_length: int, *, graph: bool = False):
        super().__init__(gpt, batch, max_length)
        device = gpt.pos_emb.device
        self.slots = torch.arange(max_length, device=device)  # (T_max,)
        self.token = torch.zeros(batch, 1, dtype=torch.long, device=device)  # (B, 1)
        self.position = torch.zeros(1, dtype=torch.long, device=device)  # (1,)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None  # (B, vocab), the graph's output
        if graph:
            if device.type != "cuda":
                raise ValueError(f"CUDA graphs need a CUDA device, not {device}")
            self._capture()

    def _forward(self) -> torch.Tensor:
        with torch.autocast(self.token.device.type, enabled=False):
            return self.gpt.forward_at(self.token, self.position, self.cache, self.slots)

    def _capture(self) -> None:
        """Warm up on a side stream (kernel selection, workspaces), then record the step.

        Runs before any prefill: the warm-up writes keys and values at slot 0, which the
        prefill overwrites."""
        device = self.token.device
        try:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._forward()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):  # the warm-up's stream: its cuBLAS workspace is set up
                logits = self._forward()
        except Exception as error:  # any capture failure: the eager step gives the same tokens
            logger.warning("could not capture the prior's decoding step as a CUDA graph (%s); "
                           "sampling continues without it, slower", summary(error))
            self.graph, self.logits = None, None
            return
        self.graph, self.logits = graph, logits

    @torch.inference_mode()
    def __call__(self, token: torch.Tensor, position: int) -> torch.Tensor:
        """Logits (B, vocab) after feeding ``token`` (B,) at sequence position ``position``.

        The result of a replayed graph is its static output: read it before the next call."""
        if not 0 < position < self.max_length:
            raise ValueError(f"position {position} is outside the cache of {self.max_length} slots")
        self.token.copy_(token.view(-1, 1))
        self.position.fill_(position)
        if self.graph is None:
            return self._forward()
        self.graph.replay()
        assert self.logits is not None
        return self.logits
