"""TensorBatch: aligned tensors that share leading ``[batch, time]`` dimensions."""

from __future__ import annotations

from typing import Any


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
