"""Thin helpers over ``torch.distributed`` that are no-ops in a single process.

``PPOTrainer`` runs unchanged under ``torchrun --nproc_per_node N`` or ``accelerate launch``: each
process takes ``batch_size / world_size`` of the global batch, statistics that steer training are
all-reduced with these helpers, and gradients are summed across processes before the optimizer step.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def init_from_environment() -> bool:
    """Start the process group when launched by torchrun/accelerate (WORLD_SIZE > 1) and none exists.

    Uses NCCL when CUDA is available, gloo otherwise. Returns whether this process is distributed.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":  # before the group starts, so NCCL binds each process to its own GPU
        torch.cuda.set_device(device())
    dist.init_process_group(backend=backend)
    return True


def device() -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _communication_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A detached copy on a device the backend can send: NCCL only moves CUDA tensors."""
    copy = tensor.detach().clone().contiguous()
    if dist.get_backend() == "nccl" and not copy.is_cuda:
        copy = copy.to(device())
    return copy


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def ensure_process_group() -> bool:
    """``init_from_environment``, and when this call started the group, ``shutdown`` at interpreter exit.

    Lets a one-process script run unchanged under torchrun/accelerate (as TRL's trainer does through
    ``Accelerator()``); a group the caller started (or accelerate's) is left for the caller to end.
    """
    if is_distributed():
        return True
    if not init_from_environment():
        return False
    atexit.register(shutdown)
    return True


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all processes (a new tensor on the input's device; the input is untouched)."""
    if not is_distributed():
        return tensor
    total = _communication_copy(tensor)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(tensor) / world_size()


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate equally shaped tensors from every process along dim 0, in rank order."""
    if not is_distributed():
        return tensor
    local = _communication_copy(tensor)
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local)
    return torch.cat(parts, dim=0).to(tensor.device)


def sum_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Sum gradients across processes in one flat all-reduce (losses are normalised globally)."""
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for grad in grads:
        count = grad.numel()
        grad.copy_(flat[offset : offset + count].view_as(grad))
        offset += count


def check_divisible(global_size: int, name: str) -> int:
    """The per-process share of ``global_size``; a clear error when the world size does not divide it."""
    size = world_size()
    if global_size % size:
        raise ValueError(
            f"{name}={global_size} does not divide across {size} processes; launch with a number of "
            f"processes that divides {name}, or change {name} to a multiple of {size}."
        )
    return global_size // size


def shutdown() -> None:
    """Barrier, then destroy the process group (torch 2.13 + gloo can hang at exit without the barrier)."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
