"""Training on more than one GPU or machine with PyTorch's own distributed training.

Start any ``train`` command with ``torchrun`` (``torchrun --nproc_per_node 4 -m generator
train vqgan ...``; across machines ``--nnodes``/``--rdzv-endpoint`` as torchrun documents):
torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, and :meth:`Distributed.current`
joins the process group (NCCL on GPUs, gloo on CPUs). Every process draws the same combined
batch from the same seed and takes its own slice, the autoencoder is wrapped in
``DistributedDataParallel`` (which averages its gradients), so N processes of batch B train
the same weights as one process of batch N x B. The first process writes every file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place in a distributed run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files and reports progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def current(cls, device: torch.device | None = None) -> Distributed:
        """This process's place, from torchrun's environment; joins the process group on first
        use (NCCL for a CUDA ``device``, gloo otherwise)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        place = cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
        return place

    def device(self, device: torch.device) -> torch.device:
        """This process's device: its own GPU (``LOCAL_RANK``) when training on CUDA."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def share(self, value: Any) -> Any:
        """The main process's ``value`` in every process (a picklable object)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Average the gradients of ``parameters`` over the processes (for a module that DDP
        does not wrap, such as the discriminator, which runs twice in a step)."""
        if not self.active:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad.div_(self.world)

    def average(self, values: dict[str, float], device: torch.device) -> dict[str, float]:
        """The mean of each of ``values`` over the processes (for logging)."""
        if not self.active or not values:
            return values
        names = sorted(values)
        tensor = torch.tensor([values[name] for name in names], dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return {name: float(value) / self.world for name, value in zip(names, tensor.tolist(), strict=True)}

    def close(self) -> None:
        """Leave the process group at the end of a run, once every process is there (a process
        that exits with the group still open can abort in gloo's teardown while another one is
        still writing the run's files)."""
        if self.active and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
