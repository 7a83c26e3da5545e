"""``PPOTrainer.dataloader``: TRL 0.11's ``prepare_dataloader`` over a dataset of tokenized prompts.

A ``datasets.Dataset``, a torch ``Dataset`` or a list of dicts; batches of ``batch_size`` rows
(``batch_size / world_size`` per process under torchrun, each process its own shard), shuffled,
the last incomplete batch dropped, collated by ``data_collator``. Rows must carry ``input_ids``:
TRL scripts read ``batch["input_ids"]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from rlcode.rlhf import distributed

# Columns TRL keeps besides the model forward's arguments ("label" for the reward, the texts for logging).
KEPT_COLUMNS = ("label", "query", "response")


def _is_hf_dataset(dataset: Any) -> bool:
    try:
        import datasets
    except ImportError:
        return False
    return isinstance(dataset, datasets.Dataset)


def used_columns(dataset: Any, forward: Callable[..., Any]) -> Any:
    """TRL's ``_remove_unused_columns``: keep the forward's argument names and KEPT_COLUMNS."""
    keep = set(inspect.signature(forward).parameters) | set(KEPT_COLUMNS)
    return dataset.remove_columns([name for name in dataset.column_names if name not in keep])


def check_rows(dataset: Any, hf_dataset: bool, rows_per_batch: int) -> None:
    """A clear error, before training, for a dataset without ``input_ids`` or without one full batch."""
    if hf_dataset:
        columns = list(dataset.column_names)
    else:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset must be a datasets.Dataset, a torch Dataset or a list of dicts, got "
                            f"{type(dataset).__name__}.")
        first = dataset[0] if len(dataset) else {}
        if not isinstance(first, Mapping):
            raise ValueError(f"dataset rows must be dicts with an 'input_ids' entry, got {type(first).__name__}; "
                             "tokenize the prompts into {'input_ids': ...} rows.")
        columns = list(first)
    if "input_ids" not in columns:
        raise ValueError(f"dataset rows have no 'input_ids' (columns: {columns}); TRL-style loops read "
                         "batch['input_ids'], so tokenize the prompts into an 'input_ids' column first.")
    if len(dataset) < rows_per_batch:
        raise ValueError(f"dataset has {len(dataset)} rows, fewer than one batch of {rows_per_batch}; the "
                         "dataloader (drop_last=True, as in TRL) would yield nothing. Use more rows or a smaller "
                         "PPOConfig.batch_size.")


def prepare_dataloader(dataset: Any, data_collator: Callable[[list[Any]], Any] | None, batch_size: int,
                       remove_unused_columns: bool, forward: Callable[..., Any], seed: int) -> torch.utils.data.DataLoader:
    """The shuffled, drop-last DataLoader of this process's rows (see the module docstring)."""
    hf_dataset = _is_hf_dataset(dataset)
    rows_per_batch = distributed.check_divisible(batch_size, "PPOConfig.batch_size")
    check_rows(dataset, hf_dataset, rows_per_batch)
    if hf_dataset and remove_unused_columns:
        dataset = used_columns(dataset, forward)
    sampler: torch.utils.data.Sampler[int] | None = None
    if distributed.is_distributed():  # each process its own shard, as accelerate's prepared dataloader
        sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    return torch.utils.data.DataLoader(dataset, batch_size=rows_per_batch, shuffle=sampler is None, sampler=sampler,
                                       collate_fn=data_collator, drop_last=True)
