"""Training across processes with torch DDP, as ``torchrun`` starts them.

``torchrun --standalone --nproc_per_node=N lutfuse-train ...`` (one machine) or
``torchrun --nnodes=M --nproc_per_node=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT ...``
(several) sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous; this module joins the process
group (NCCL on GPUs, gloo on CPUs) and says who does what. Without torchrun it is one
process, as before. Every rank computes its share of the global batch; DDP averages the
gradients (one all-reduce of the ~73 k LUT + context values, or the teacher's, per step);
rank 0 alone writes logs, pictures, checkpoints and the model.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lutfuse_ros.core.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place in the run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""  # "" when single-process

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, batch_size: int) -> int:
        """This rank's part of a global batch (the same on every rank)."""
        if batch_size % self.size:
            raise ConfigError(f"batch_size {batch_size} does not split evenly over "
                              f"{self.size} processes: use a multiple of {self.size}")
        return batch_size // self.size

    def describe(self) -> str:
        if not self.distributed:
            return "world size 1 (one process)"
        return f"world size {self.size}, backend {self.backend}"


def restarted() -> bool:
    """True when torchrun restarted the workers (``--max-restarts``) after a failure."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def join(device: str, timeout_s: float = 600.0) -> tuple[World, str]:
    """Join torchrun's process group if there is one. Returns the world and this rank's
    device (``cuda:LOCAL_RANK`` on GPUs)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        if torch.cuda.device_count() <= local:
            raise ConfigError(f"rank {rank}: LOCAL_RANK {local} but this machine has "
                              f"{torch.cuda.device_count()} GPU(s): --nproc_per_node at most that")
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return World(rank, size, local, backend), device


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def mean_over_ranks(values: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a (detached) tensor over the ranks: every rank gets the same numbers."""
    if not world.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world.size


def any_rank(flag: bool, world: World, device: str) -> bool:
    """True on every rank when ``flag`` is true on one (e.g. a time limit reached)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
