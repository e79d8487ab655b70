"""Data-parallel training with ``torch.distributed`` when the process was launched by ``torchrun``."""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def setup() -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment; return ``(rank, world size)``.

    Without ``WORLD_SIZE`` > 1 in the environment this is a single process and nothing is initialised. The
    backend is NCCL on CUDA and gloo on the CPU.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    logger.info("joined process group: rank %d of %d (%s)", dist.get_rank(), world, backend)
    return dist.get_rank(), dist.get_world_size()


def local_device() -> str | None:
    """Return ``"cuda:LOCAL_RANK"`` for a CUDA process launched by ``torchrun``, else None."""
    if "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return None


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def average_gradients(module: torch.nn.Module, world: int) -> None:
    """Average gradients over ranks; parameters a rank did not use count as zero gradients."""
    for parameter in module.parameters():
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
        parameter.grad /= world
