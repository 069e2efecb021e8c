"""Data-parallel runs on PyTorch's own engine: ``torchrun`` starts the processes, this module
joins them. No launcher of our own.

Under ``torchrun --nproc-per-node N [--nnodes M ...]`` every process has ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables in its environment;
:func:`process_group` turns them into a process group (NCCL on GPUs, gloo on CPUs), pins each
process to the GPU of its local rank, and tears the group down when the run ends, also on an
error. Started without them (plain ``python``), it is a single process and changes nothing.

The loaders need nothing else: built while the group is up, they take their shard from
``torch.distributed`` (:func:`dali_voc.resolve.shard_of`), every rank steps the same number of
times per epoch, and each rank draws its own crop windows.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Process:
    """This process's place in a (possibly one-process) run.

    Attributes:
        rank, world_size: global rank and number of processes.
        local_rank: rank on this node (which GPU it uses).
        device: the torch device this process computes on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment describes a multi-process run (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(use_cuda: bool | None = None) -> Iterator[Process]:
    """Join the run ``torchrun`` started (or stay one process) for the ``with`` block.

    Args:
        use_cuda: compute on GPUs (NCCL) or CPUs (gloo); default: when CUDA is available.

    The group is destroyed when the block ends, normally or by an exception, so no process is
    left waiting for the others.
    """
    use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    if not launched_by_torchrun():
        yield Process(0, 1, 0, torch.device("cuda" if use_cuda else "cpu"))
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)  # before the group: NCCL binds to the current device
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        yield Process(dist.get_rank(), dist.get_world_size(), local_rank, device)
    finally:
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over all processes (in place; returned for chaining). A no-op without
    a process group."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather(value: Any) -> list[Any]:
    """``value`` from every process, in rank order (``[value]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
