"""TensorBatch: aligned tensors that share leading ``[batch, time]`` dimensions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


class TensorBatch(dict):
    """A dict of tensors with the same leading dimension(s), indexable as a whole.

    ``batch["rewards"]`` and ``batch.rewards`` are the same tensor; ``batch[idx]`` with a tensor,
    slice or int index selects along the first dimension of every entry.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return dict.__getitem__(self, key)
        return type(self)({name: value[key] for name, value in self.items()})

    @property
    def size(self) -> int:
        return len(next(iter(self.values())))

    def flatten(self) -> TensorBatch:
        """Merge ``[B, T, ...]`` into ``[B*T, ...]`` for every entry."""
        return type(self)({name: value.flatten(0, 1) for name, value in self.items()})

    def minibatches(self, size: int, generator: torch.Generator | None = None) -> Iterator[TensorBatch]:
        """Shuffled minibatches of ``size`` rows along the first dimension (the last may be smaller)."""
        order = torch.randperm(self.size, generator=generator)
        for start in range(0, self.size, size):
            yield self[order[start : start + size]]

    def to(self, device: torch.device | str) -> TensorBatch:
        return type(self)({name: value.to(device) for name, value in self.items()})
