"""Dead-code restarts: codes the encoder stopped picking are moved onto its outputs.

A VQGAN trained from scratch tends to use a small part of its codebook: codes that no encoder
output lands near receive no gradient and stay where they started, so the decoder has fewer
codes to draw with (soft, blotchy reconstructions, and a prior over fewer tokens). Every
``every`` steps, each code that no encoder output picked since the last check is moved onto an
encoder output of the current batch, drawn at random, and its optimiser moments are reset. The
checkpoint format does not change: the codebook stays the upstream ``quantize.embedding.weight``.

The draw is seeded by the run's seed and the step, so a resumed run restarts the same codes with
the same vectors; under ``torchrun`` every process gathers the candidates of all processes and
sums the counts, so all processes restart the same codes alike.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist

from generator.train.distributed import Distributed

STATE_KEY = "codebook.picked"  # in the checkpoint's training state


class DeadCodeRestarts:
    """Counts how often each code is picked, and restarts the ones never picked in a window."""

    def __init__(self, n_codes: int, every: int, seed: int, device: torch.device) -> None:
        self.every = every
        self.seed = seed
        self.picked = torch.zeros(n_codes, dtype=torch.int64, device=device)  # (n_codes,) since the last check

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def observe(self, indices: torch.Tensor) -> None:
        """Count the codes of one (micro-)batch's ``indices`` (any shape)."""
        if self.enabled:
            self.picked += torch.bincount(indices.reshape(-1), minlength=self.picked.numel())

    def due(self, step: int) -> bool:
        """Whether the step just done (``step``, counted from 1) ends a window."""
        return self.enabled and step % self.every == 0

    @torch.no_grad()
    def restart(self, codebook: torch.Tensor, candidates: torch.Tensor, optimizer: torch.optim.Optimizer,
                step: int, place: Distributed | None = None) -> int:
        """Move every code not picked since the last check onto one of ``candidates``.

        Args:
            codebook: (n_codes, C) the codebook parameter (changed in place).
            candidates: (B, C, h, w) encoder outputs (after ``quant_conv``) of this process's batch.
            optimizer: the codebook's optimiser; the moved codes' Adam moments start again at zero.
            step: the step just done (seeds the draw with the run's seed).
            place: the process's place; the counts are summed and the candidates gathered over
                the processes, so every process moves the same codes to the same vectors.

        Returns:
            How many codes were moved.
        """
        place = place or Distributed()
        picked = self.picked.clone()
        vectors = candidates.detach().float().permute(0, 2, 3, 1).reshape(-1, codebook.shape[1])  # (B*h*w, C)
        if place.active:
            dist.all_reduce(picked, op=dist.ReduceOp.SUM)
            gathered = [torch.empty_like(vectors) for _ in range(place.world)]
            dist.all_gather(gathered, vectors)
            vectors = torch.cat(gathered)  # (world*B*h*w, C), the same order in every process
        self.picked.zero_()
        dead = torch.nonzero(picked == 0).flatten()  # (D,)
        if dead.numel() == 0 or vectors.shape[0] == 0:
            return 0
        draw = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        if dead.numel() <= vectors.shape[0]:
            chosen = torch.randperm(vectors.shape[0], generator=draw)[:dead.numel()]
        else:  # more dead codes than candidates: some share a vector (the next check restarts the extra ones)
            chosen = torch.randint(vectors.shape[0], (dead.numel(),), generator=draw)
        codebook[dead.to(codebook.device)] = vectors[chosen.to(vectors.device)].to(codebook.dtype)
        state = optimizer.state.get(codebook, {})
        for name in ("exp_avg", "exp_avg_sq"):
            if name in state:
                state[name][dead.to(state[name].device)] = 0
        return int(dead.numel())

    def state(self) -> dict[str, torch.Tensor]:
        """The counts of the current window (for the checkpoint: a resumed run checks the same window)."""
        return {STATE_KEY: self.picked.detach().cpu().clone()} if self.enabled else {}

    def restore(self, state: Mapping[str, torch.Tensor]) -> None:
        """Go back to a :meth:`state` (a checkpoint without one starts an empty window)."""
        if self.enabled and STATE_KEY in state and state[STATE_KEY].numel() == self.picked.numel():
            self.picked.copy_(state[STATE_KEY])
