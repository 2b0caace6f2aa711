"""Data-parallel helpers: rank, world size, barrier and sums across processes.

Taught in chapter 10 (``chapters/10_finetuning.ipynb``, "数据并行"). Without a process group
(one process, the default) every helper is a no-op, so the same training code runs alone or under
``torchrun``. Imports nothing from ``ftbook`` (the checkpoint writer uses it).
"""

from __future__ import annotations


def process_group():
    """``torch.distributed`` when a process group is running, else ``None``."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the running process group, ``(0, 1)`` without one."""
    d = process_group()
    return (d.get_rank(), d.get_world_size()) if d else (0, 1)


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    d = process_group()
    if d:
        d.barrier()


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over every rank (in float64; unchanged in one process)."""
    import torch

    d = process_group()
    if not d:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    d.all_reduce(t)
    return t.tolist()


def unwrap(model):
    """The model inside a ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    return model.module if hasattr(model, "module") else model


def init_from_environment() -> bool:
    """Join the process group that ``torchrun`` / ``accelerate launch`` describe in the
    environment (gloo on CPU, nccl on GPU). Returns True when this call started one."""
    import os

    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True
