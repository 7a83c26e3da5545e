"""``PPOTrainer.accelerator``: the part of ``accelerate.Accelerator`` that TRL 0.11 scripts touch.

Built on ``rlcode.rlhf.distributed`` (torch.distributed, no-ops in one process), not on accelerate:
rlcode launches under torchrun/accelerate but does its own all-reduces, so scripts that read
``ppo_trainer.accelerator.device`` or call ``.gather``/``.print``/``.log`` keep working.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from rlcode.rlhf import distributed


class ProcessAccelerator:
    """Device, process layout, gathering and logging of this process (see the module docstring)."""

    def __init__(self, device: torch.device, log: Callable[[Mapping[str, Any], int | None], None] | None = None) -> None:
        self.device = device
        self._log = log

    @property
    def num_processes(self) -> int:
        return distributed.world_size()

    @property
    def process_index(self) -> int:
        return distributed.rank()

    @property
    def local_process_index(self) -> int:
        return int(os.environ.get("LOCAL_RANK", "0")) if distributed.is_distributed() else 0

    @property
    def is_main_process(self) -> bool:
        return distributed.is_main_process()

    @property
    def is_local_main_process(self) -> bool:
        return self.local_process_index == 0

    @property
    def use_distributed(self) -> bool:
        return distributed.is_distributed()

    def unwrap_model(self, model: nn.Module, keep_fp32_wrapper: bool = True) -> nn.Module:
        """The model itself (a DistributedDataParallel wrapper's ``module`` if wrapped)."""
        return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model

    def gather(self, tensor: Any) -> Any:
        """Every process's tensor concatenated along dim 0 in rank order (0-d tensors become [N]);
        lists, tuples and dicts of tensors are gathered leaf by leaf."""
        if isinstance(tensor, Mapping):
            return {key: self.gather(value) for key, value in tensor.items()}
        if isinstance(tensor, (list, tuple)):
            return type(tensor)(self.gather(value) for value in tensor)
        tensor = tensor.reshape(1) if tensor.dim() == 0 else tensor
        return distributed.all_gather_cat(tensor)

    def gather_object(self, items: list[Any]) -> list[Any]:
        """Every process's list of picklable items, joined in rank order."""
        if not distributed.is_distributed():
            return list(items)
        import torch.distributed as dist

        parts: list[Any] = [None] * distributed.world_size()
        dist.all_gather_object(parts, list(items))
        return [item for part in parts for item in part]

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on the main process only."""
        if self.is_main_process:
            print(*args, **kwargs)

    def wait_for_everyone(self) -> None:
        if distributed.is_distributed():
            import torch.distributed as dist

            dist.barrier()

    def log(self, values: Mapping[str, Any], step: int | None = None, log_kwargs: Any = None) -> None:
        """Scalars to the trainer's loggers (``PPOConfig.log_with``), from the main process only."""
        if self._log is not None and self.is_main_process:
            self._log(values, step)

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        loss.backward(**kwargs)

    def prepare(self, *objects: Any) -> Any:
        """The objects unchanged: rlcode shards batches itself (each process passes its share to step())."""
        return objects[0] if len(objects) == 1 else objects
