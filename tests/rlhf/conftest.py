"""Tiny random GPT-2 models and ragged batches for the RLHF tests (no hub access)."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config

from rlcode.rlhf import CausalLMWithValueHead

VOCAB = 50


def tiny_config(**overrides) -> GPT2Config:
    settings = dict(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=1,
                    eos_token_id=2, pad_token_id=0)
    settings.update(overrides)
    return GPT2Config(**settings)


def make_model(seed: int = 0, **overrides) -> CausalLMWithValueHead:
    torch.manual_seed(seed)
    return CausalLMWithValueHead.from_config(tiny_config(**overrides))


def make_batch(size: int, seed: int = 1, max_query: int = 7, max_response: int = 9):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 100, (size, 2), generator=generator)
    queries = [torch.randint(3, VOCAB, (1 + int(n) % max_query,), generator=generator) for n in lengths[:, 0]]
    responses = [torch.randint(3, VOCAB, (2 + int(n) % (max_response - 1),), generator=generator)
                 for n in lengths[:, 1]]
    scores = [torch.tensor(float(x)) for x in torch.randn(size, generator=generator)]
    return queries, responses, scores


@pytest.fixture
def tiny_model():
    return make_model


@pytest.fixture
def ragged_batch():
    return make_batch


def assert_same_step(expected: dict, got: dict, trained: torch.nn.Module, resumed: torch.nn.Module) -> None:
    """Two step()s agree exactly: every statistic but the timings, and every weight of the two models."""
    import numpy as np

    for key, value in expected.items():
        if not key.startswith("time/"):
            assert np.array_equal(np.asarray(value), np.asarray(got[key]), equal_nan=True), key
    for (name, a), b in zip(trained.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
