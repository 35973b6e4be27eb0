"""Multi-process data-parallel helpers (torch.distributed; NCCL on CUDA, gloo on CPU).

A process started by ``torchrun`` finds ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its environment;
a plain process is rank 0 of 1 and every helper here is then a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env() -> ProcessGroup:
    """Join the process group that torchrun describes in the environment (if any)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessGroup()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return ProcessGroup(rank, world_size, local_rank)


def broadcast_object(value: Any, group: ProcessGroup) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not group.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: Any, group: ProcessGroup) -> list[Any]:
    """Every rank's ``value``, indexed by rank."""
    if not group.enabled:
        return [value]
    out: list[Any] = [None] * group.world_size
    dist.all_gather_object(out, value)
    return out


def all_reduce_sum(value: float, group: ProcessGroup, device: torch.device) -> float:
    if not group.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def shutdown(group: ProcessGroup) -> None:
    if group.enabled and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group_from_env() -> Iterator[ProcessGroup]:
    """The torchrun process group for the block's duration, torn down on the way out."""
    group = init_from_env()
    try:
        yield group
        # Why: a gloo rank that destroys its group while a peer's last send is still in flight
        # makes the peer abort ("terminate called without an active exception", SIGABRT).
        # Only on success: after a failure the peers may never reach the barrier.
        if group.enabled:
            dist.barrier()
    finally:
        shutdown(group)
