"""torchrun + DDP helpers (the MONAI convention); everything is a no-op in a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "barrier", "init_distributed", "shard"]


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistributedContext:
    """Initialise the process group from torchrun's environment (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def shard(order: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """This rank's part of an epoch's order, as ``DistributedSampler`` does it (padded to equal length)."""
    if not context.enabled:
        return order
    per_rank = -(-order.numel() // context.world_size)
    padded = torch.cat([order, order[: per_rank * context.world_size - order.numel()]])
    return padded[context.rank :: context.world_size]
