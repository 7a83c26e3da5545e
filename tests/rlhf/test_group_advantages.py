"""group_advantages against loops written from the papers' formulas, and its input checks."""

from __future__ import annotations

import math

import pytest
import torch

from rlcode.rlhf.group_advantages import group_advantages


def _std(values: list[float]) -> float:  # Bessel-corrected, as TRL's nanstd
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _whiten(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    return [(v - mean) / (_std(values) + 1e-4) for v in values]


def _loop(scores: list[list[float]], estimator: str, scale: str) -> list[list[float]]:
    flat = [r for group in scores for r in group]
    out = []
    for group in scores:
        mean = sum(group) / len(group)
        if estimator == "rloo":
            row = [r - (sum(group) - r) / (len(group) - 1) for r in group]
        else:
            row = [r - mean for r in group]
        if scale == "group":
            row = [a / (_std(group) + 1e-4) for a in row]
        elif scale == "batch" and estimator == "grpo":
            row = [a / (_std(flat) + 1e-4) for a in row]
        out.append(row)
    if scale == "batch" and estimator != "grpo":
        whitened = _whiten([a for row in out for a in row])
        out = [whitened[i * len(scores[0]):(i + 1) * len(scores[0])] for i in range(len(scores))]
    return out


CASES = [("grpo", "group"), ("grpo", "batch"), ("grpo", "none"), ("dr_grpo", "none"), ("rloo", "none"),
         ("rloo", "batch"), ("reinforce_pp", "batch")]


@pytest.mark.parametrize("estimator,scale", CASES)
def test_matches_loop(estimator, scale):
    scores = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 1
    scores[2] = 0.5  # a group whose completions all tie: std 0, advantage 0, no division by zero
    expected = torch.tensor(_loop(scores.tolist(), estimator, scale), dtype=torch.float64)
    got = group_advantages(scores, estimator, scale)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(got[2], torch.zeros(4, dtype=torch.float64)) or scale == "batch"


def test_defaults_and_layouts():
    scores = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(group_advantages(scores), group_advantages(scores, "grpo", "group"))
    assert torch.equal(group_advantages(scores, "dr_grpo"), group_advantages(scores, "grpo", "none"))
    assert torch.equal(group_advantages(scores, "reinforce_pp"), group_advantages(scores, "reinforce_pp", "batch"))
    flat = group_advantages(scores.reshape(-1), "rloo", num_generations=4)
    assert flat.shape == (12,)
    assert torch.equal(flat, group_advantages(scores, "rloo").reshape(-1))
    assert torch.equal(group_advantages(scores.tolist()), group_advantages(scores))


def test_group_scaled_advantages_have_unit_unbiased_std():
    scores = torch.randn(4, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    advantages = group_advantages(scores)
    torch.testing.assert_close(advantages.mean(dim=1), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    std = scores.std(dim=1)
    torch.testing.assert_close(advantages.std(dim=1), std / (std + 1e-4))


def test_rloo_is_rescaled_centring():
    scores = torch.tensor([[1.0, 2.0, 6.0]])
    # baselines (2+6)/2=4, (1+6)/2=3.5, (1+2)/2=1.5
    torch.testing.assert_close(group_advantages(scores, "rloo"), torch.tensor([[-3.0, -1.5, 4.5]]))


@pytest.mark.parametrize("scores,kwargs,match", [
    ([[1.0, 2.0], [3.0]], {}, "sizes"),
    ([[1.0], [2.0]], {}, "at least 2"),
    ([[1.0], [2.0]], {"estimator": "rloo"}, "at least 2"),
    (torch.tensor([[1.0, float("nan")]]), {}, "NaN"),
    (torch.tensor([[1.0, float("inf")]]), {}, "NaN"),
    (torch.ones(5), {"num_generations": 2}, "num_generations"),
    (torch.ones(4), {}, "num_generations"),
    (torch.ones(2, 3), {"num_generations": 2}, "num_generations"),
    (torch.ones(2, 3, 1), {}, "shape"),
    (torch.ones(2, 3), {"estimator": "dr_grpo", "scale_rewards": "group"}, "Dr. GRPO"),
    (torch.ones(2, 3), {"estimator": "rloo", "scale_rewards": "group"}, "scale_rewards"),
    (torch.ones(2, 3), {"estimator": "ppo"}, "unknown estimator"),
    ([], {}, "no scores"),
    ([[3.0]], {"scale_rewards": "batch"}, "at least 2 scores"),
])
def test_bad_input_raises(scores, kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(scores, **kwargs)


def test_single_completion_without_group_scaling_is_allowed():
    assert torch.equal(group_advantages([[1.0], [5.0]], "grpo", "none"), torch.zeros(2, 1))
    advantages = group_advantages([[1.0], [5.0]], "reinforce_pp")  # group-centred to 0, then whitened: 0
    assert torch.equal(advantages, torch.zeros(2, 1))
