"""Data-parallel training over several processes, GPUs and machines.

The same config runs on one process or many; the launcher decides:

    accelerate launch --num_processes 8 -m tunelab fit CONFIG.yaml     # one machine, 8 GPUs
    torchrun --nproc_per_node 2 -m tunelab fit CONFIG.yaml            # 2 processes (gloo on CPU)

Each process trains on its share of every batch (``data.batch_size`` is the global batch, so the
result does not depend on the number of processes); gradients are averaged by PyTorch's
``DistributedDataParallel``; the process group and the device of each process come from
accelerate's ``PartialState`` (which reads what accelerate launch, torchrun or MPI set). Rank 0
alone writes the run folder; the freeze-boundary cache is computed in shards by all ranks into one
file on the run's (shared) filesystem; metrics are computed from predictions gathered from all ranks.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn

_WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


@dataclass(frozen=True)
class Dist:
    """This process's place among the processes of one run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over all processes (float64, so counts stay exact)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        torch_dist.all_reduce(t)
        return t.cpu().tolist()

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate each rank's rows in rank order, on every rank (ranks may hold different numbers)."""
        return torch.cat(self.gather_objects(t.cpu())) if self.enabled else t

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        parts: list[Any] = [None] * self.world
        torch_dist.all_gather_object(parts, obj)
        return parts

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, n: int, multiple: int = 1) -> range:
        """This rank's contiguous share of ``range(n)``; shares start at multiples of ``multiple``
        (whole batches, so a sharded pass batches rows exactly as one process would)."""
        blocks = -(-n // multiple)
        per = -(-blocks // self.world)
        return range(min(n, self.rank * per * multiple), min(n, (self.rank + 1) * per * multiple))

    def split_batch(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's part of one global batch of indices."""
        return idx.tensor_split(self.world)[self.rank] if self.enabled else idx

    def wrap(self, module: nn.Module, *, sync_buffers: bool) -> nn.Module:
        """``module`` under DistributedDataParallel (its trainable parameters as they are now; a stage's
        forward uses every one of them, so DDP need not search the graph for unused ones)."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        on_gpu = next(module.parameters()).device.type == "cuda"
        # PyTorch 2.14 renamed broadcast_buffers (the per-forward sync of buffers from rank 0)
        new_name = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        sync: dict[str, Any] = {"forward_sync_buffers" if new_name else "broadcast_buffers": sync_buffers}
        return DistributedDataParallel(module, device_ids=[self.local_rank] if on_gpu else None, **sync)

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (it builds what the others then find, e.g. a decode store)."""
        if not self.main:
            self.barrier()
        try:
            yield
        finally:
            if self.main:
                self.barrier()

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if torch_dist.get_backend() == "nccl" else torch.device("cpu")


def launched_world_size() -> int:
    """How many processes the launcher (torchrun, accelerate launch, mpirun) started; 1 if none."""
    for var in _WORLD_VARS:
        if var in os.environ:
            return int(os.environ[var])
    return 1


def init(device: str) -> tuple[Dist, torch.device | None]:
    """Join the process group when a launcher started several processes. Returns this process's
    :class:`Dist` and its device (None when not distributed: the config's run.device decides)."""
    if launched_world_size() <= 1:
        return Dist(), None
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    return Dist(state.process_index, state.num_processes, state.local_process_index), state.device
