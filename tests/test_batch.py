"""TensorBatch indexing, flattening and minibatches."""

from __future__ import annotations

import torch

from rlcode.batch import TensorBatch


def test_index_flatten_and_minibatches_cover_every_row_once() -> None:
    batch = TensorBatch(observations=torch.arange(24.0).view(2, 3, 4), rewards=torch.arange(6.0).view(2, 3))
    assert batch.rewards is batch["rewards"]
    assert torch.equal(batch[1].rewards, torch.tensor([3.0, 4.0, 5.0]))
    flat = batch.flatten()
    assert flat.observations.shape == (6, 4) and flat.size == 6
    seen = []
    for minibatch in flat.minibatches(4, torch.Generator().manual_seed(0)):
        assert isinstance(minibatch, TensorBatch)
        assert torch.equal(minibatch.observations[:, 0] / 4, minibatch.rewards)  # rows stay aligned
        seen += minibatch.rewards.tolist()
    assert sorted(seen) == list(range(6)) and len(seen) == 6
