"""TensorBatch indexing and flattening."""

from __future__ import annotations

import torch

from rlcode.batch import TensorBatch


def test_index_and_flatten_keep_rows_aligned() -> None:
    batch = TensorBatch(observations=torch.arange(24.0).view(2, 3, 4), rewards=torch.arange(6.0).view(2, 3))
    assert batch.rewards is batch["rewards"]
    assert torch.equal(batch[1].rewards, torch.tensor([3.0, 4.0, 5.0]))
    flat = batch.flatten()
    assert flat.observations.shape == (6, 4) and flat.size == 6
    rows = flat[torch.tensor([5, 0])]
    assert isinstance(rows, TensorBatch)
    assert torch.equal(rows.observations[:, 0] / 4, rows.rewards)  # rows stay aligned
