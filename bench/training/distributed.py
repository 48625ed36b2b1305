"""Training on several processes: ``torch.distributed`` and ``DistributedDataParallel``.

``torchrun --nproc_per_node N -m bench train MODEL ...`` starts N copies of the same command;
torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous (``MASTER_ADDR``,
``MASTER_PORT``) in each one's environment, and :func:`start` joins them into a process group.
Launched without torchrun, :func:`start` returns the one-process :class:`World` and nothing
else changes.

Each rank trains on its part of every epoch (:func:`data.batches.shard_order`) at batch
``global_batch / world_size``; DDP averages the gradients, so a step of W ranks equals one
process's step at the global batch (models without batch norm or dropout: exactly, up to float
rounding; batch norm's statistics are per rank, as in torchvision's reference scripts without
``--sync-bn``). Evaluation is split the same way, without padding, and the counts are summed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from data.batches import RankShard

__all__ = ["BACKENDS", "World", "ONE_PROCESS", "launched", "choose_backend", "start", "stop"]

log = logging.getLogger(__name__)

BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: the defaults)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: one process, no process group

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, writes rows and saves weights."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def rank_shard(self) -> RankShard | None:
        """This rank's part of each epoch, ``(rank, world_size)``, for
        :meth:`data.Split.batches`; None for one process."""
        return (self.rank, self.world_size) if self.distributed else None

    def device(self, device: str) -> str:
        """The device this rank uses: ``cuda`` becomes ``cuda:<local rank>``."""
        if self.distributed and torch.device(device).type == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def local_batch(self, global_batch: int) -> int:
        """Each rank's batch; a global batch the world size does not divide is refused."""
        if global_batch % self.world_size:
            lower = global_batch - global_batch % self.world_size
            upper = lower + self.world_size
            options = f"{lower} or {upper}" if lower else str(upper)
            raise ValueError(
                f"batch {global_batch} does not split evenly over {self.world_size} processes: "
                f"pass --batch-size {options} (a multiple of the world size)"
            )
        return global_batch // self.world_size

    def wrap(self, model: nn.Module, device: str) -> nn.Module:
        """``model`` in ``DistributedDataParallel`` (which broadcasts rank 0's parameters)."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks (the values themselves with one process)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._reduce_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def max(self, value: float) -> float:
        """The largest of the ranks' values: one clock for every rank's decisions."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._reduce_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (it may download or cache files), then the others."""
        if self.distributed and not self.is_main:
            dist.barrier()
        yield
        if self.distributed and self.is_main:
            dist.barrier()

    def _reduce_device(self) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


ONE_PROCESS = World()


def launched() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when torchrun (or a launcher like it) started us."""
    if "WORLD_SIZE" not in os.environ:
        return None
    try:
        world_size = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers: launch with torchrun"
        ) from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK {rank} of WORLD_SIZE {world_size} is impossible: use torchrun")
    return rank, world_size, local_rank


def choose_backend(device: str, requested: str | None = None) -> str:
    """gloo for CPU, nccl for CUDA; ``requested`` is checked against the device and this torch."""
    on_cuda = torch.device(device).type == "cuda"
    if requested is None:
        return "nccl" if on_cuda and dist.is_nccl_available() else "gloo"
    if requested not in BACKENDS:
        raise ValueError(f"--backend {requested} is not one of {', '.join(BACKENDS)}")
    if requested == "nccl" and not on_cuda:
        raise ValueError(
            "--backend nccl runs on CUDA devices only: use --backend gloo with --device cpu"
        )
    if not dist.is_backend_available(requested):
        raise ValueError(f"--backend {requested} is not built into this torch: use gloo")
    return requested


def start(device: str, backend: str | None = None) -> World:
    """Join the process group torchrun set up; one process without torchrun.

    Bad settings (an impossible rank, a backend the device cannot use, more local ranks than
    GPUs) raise ``ValueError`` before anything is trained.
    """
    where = launched()
    if where is None or where[1] == 1:
        if backend is not None:
            choose_backend(device, backend)  # still refuse nccl on cpu
            log.warning("--backend %s has no effect in one process: launch with torchrun", backend)
        return ONE_PROCESS
    rank, world_size, local_rank = where
    chosen = choose_backend(device, backend)
    if torch.device(device).type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} GPUs: "
                "pass --nproc_per_node at most the GPU count"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=chosen)
    return World(rank=rank, world_size=world_size, local_rank=local_rank, backend=chosen)


def stop(world: World) -> None:
    """Leave the process group (after the last collective)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
