"""Data-parallel training under ``torchrun``: which process this is, and the few collectives the engine needs.

``torchrun --nproc_per_node=N -m lib.runs train ROLE …`` starts N processes. Each trains the same
model on its share of every global batch (:class:`torch.nn.parallel.DistributedDataParallel`:
gloo on CPUs, NCCL on GPUs), gradients are averaged over the processes, and only rank 0 writes
files (:func:`lib.train.fit`). A process that torchrun did not start is rank 0 of one, and
nothing here then talks to another process, so the one-process path is the engine's usual one.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os

import torch
import torch.distributed as dist

# How long a process waits for the others at a collective. Rank 0 alone scores and writes a finished
# run's snapshots while the others wait at a barrier; on a CPU that can take minutes (NCCL's default: 10).
TIMEOUT = datetime.timedelta(hours=1)

__all__ = ["launched", "world_size", "rank", "is_main", "setup", "barrier", "gather", "all_sum", "broadcast", "main_first"]


def launched() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return _env_int("WORLD_SIZE", 1) > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"{name}={value!r} must be an integer (torchrun sets it)") from None


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """How many processes train together (1 outside torchrun)."""
    return dist.get_world_size() if _joined() else _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's rank among them (0 outside torchrun)."""
    return dist.get_rank() if _joined() else _env_int("RANK", 0)


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes checkpoints and prints."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group of a torchrun launch (once) and return this process's device.

    On CUDA each process takes GPU ``LOCAL_RANK`` and the group talks NCCL; on CPUs, gloo.
    Outside torchrun ``device`` comes back unchanged and no group is formed.
    """
    if not launched():
        return device
    if device.type == "cuda":
        local, count = _env_int("LOCAL_RANK", 0), torch.cuda.device_count()
        if local >= count:
            raise ValueError(f"LOCAL_RANK={local} but this machine has {count} GPU(s); "
                             f"start at most {count} processes per node (torchrun --nproc_per_node={count})")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not _joined():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
        atexit.register(_leave)
    return device


def _leave() -> None:
    if _joined():
        dist.destroy_process_group()


def _on_backend(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` where the group's backend can send it (NCCL: the current GPU)."""
    return tensor.cuda() if dist.get_backend() == "nccl" else tensor


def barrier() -> None:
    """Wait until every process gets here (nothing outside torchrun)."""
    if world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's ``tensor`` (all of one shape) concatenated along dim 0 in rank order, on every process."""
    if world_size() == 1:
        return tensor
    local = _on_backend(tensor.contiguous())
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(tensor.device)


def all_sum(values: list[float]) -> list[float]:
    """The element-wise sum of ``values`` over the processes (float64), on every process."""
    if world_size() == 1:
        return list(values)
    total = _on_backend(torch.tensor(values, dtype=torch.float64))
    dist.all_reduce(total)
    return total.cpu().tolist()


def broadcast(obj):
    """Rank 0's ``obj`` (any picklable value), on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def main_first():
    """Run the block on rank 0 first, then on the others (e.g. decoding a data set into its cache once)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
