"""The process group of a batch run: torch.distributed under a launcher, or one plain process.

torchrun, ``accelerate launch`` and ``srun torchrun`` all describe the process through the same
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); without them the
run is one process and no process group is made. Each process takes the device of its local rank;
gloo connects CPU processes, nccl CUDA ones.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Optional

import torch

from ..errors import InputError


def launched() -> bool:
    """True under torchrun / accelerate launch (several processes or not)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def pick_device(requested: Optional[str], local_rank: int) -> torch.device:
    """``requested`` (cpu, cuda, cuda:N, mps or None for the best available), checked to exist on
    this machine, with the local rank's GPU when the index is left open."""
    from ..devices import check_device, default_device

    device = check_device(requested) if requested else default_device()
    if device.type == "cuda" and device.index is None:
        if local_rank >= torch.cuda.device_count():
            raise InputError(
                f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "start at most that many processes per machine (--nproc_per_node)."
            )
        device = torch.device("cuda", local_rank)
    return device


@dataclasses.dataclass
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device
    group: bool  # a torch.distributed process group was made (and must be destroyed)

    @classmethod
    def start(cls, requested_device: Optional[str] = None, timeout_hours: float = 6.0) -> "World":
        if not launched():
            return cls(0, 1, 0, pick_device(requested_device, 0), False)
        import torch.distributed as dist

        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = pick_device(requested_device, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Long timeout: rank 0 encodes every prompt while the others wait at the first barrier,
        # and ranks finish their last batches at different times.
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=timeout_hours))
        return cls(rank, size, local_rank, device, True)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if not self.group:
            return
        import torch.distributed as dist

        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def close(self) -> None:
        if self.group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.group = False
