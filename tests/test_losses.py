"""Shared losses against element-by-element computations written out here."""

from __future__ import annotations

import math

import pytest
import torch

from rlcode.losses import (
    approx_kl,
    clipped_surrogate_loss,
    entropy_from_logits,
    explained_variance,
    policy_gradient_loss,
    value_loss,
)


def test_policy_gradient_loss_and_detached_advantages() -> None:
    log_probs = torch.tensor([-0.5, -1.0, -2.0], requires_grad=True)
    advantages = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    loss = policy_gradient_loss(log_probs, advantages)
    assert loss.item() == pytest.approx(-(-0.5 * 1.0 + -1.0 * -2.0 + -2.0 * 0.5) / 3)
    loss.backward()
    assert advantages.grad is None
    assert torch.allclose(log_probs.grad, -advantages.detach() / 3)


def test_clipped_surrogate_matches_elementwise_formula() -> None:
    log_probs = torch.tensor([[0.0, -0.1, -2.0], [-0.3, -0.2, -1.0]])
    old = torch.tensor([[-0.5, -0.1, -1.5], [-0.3, 0.2, -1.1]])
    advantages = torch.tensor([[1.0, -1.0, 2.0], [-0.5, 3.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    clip = 0.2
    terms, clipped_flags, squares, k3 = [], [], [], []
    for i in range(2):
        for j in range(3):
            if mask[i, j] == 0:
                continue
            ratio = math.exp(log_probs[i, j] - old[i, j])
            a = advantages[i, j].item()
            unclipped, clipped = -a * ratio, -a * min(max(ratio, 1 - clip), 1 + clip)
            terms.append(max(unclipped, clipped))
            clipped_flags.append(float(clipped > unclipped))
            squares.append((log_probs[i, j] - old[i, j]).item() ** 2)
            k3.append((ratio - 1) - (log_probs[i, j] - old[i, j]).item())
    loss, stats = clipped_surrogate_loss(log_probs, old, advantages, clip, mask)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(sum(clipped_flags) / len(terms))
    assert stats["approx_kl"].item() == pytest.approx(sum(k3) / len(terms), rel=1e-5)  # SB3's and CleanRL's
    assert stats["approx_kl_k2"].item() == pytest.approx(0.5 * sum(squares) / len(terms), rel=1e-6)  # TRL's


def test_first_ratio_is_one_and_gradient_is_minus_advantage() -> None:
    log_probs = torch.tensor([-1.0, -2.0], requires_grad=True)
    advantages = torch.tensor([2.0, -1.0])
    loss, stats = clipped_surrogate_loss(log_probs, log_probs.detach(), advantages, 0.2)
    assert torch.equal(stats["ratio"], torch.ones(2))
    loss.backward()
    assert torch.allclose(log_probs.grad, -advantages / 2)


def test_value_loss_with_and_without_clipping() -> None:
    values = torch.tensor([1.0, 2.0, 3.0])
    returns = torch.tensor([1.5, 0.0, 3.0])
    old = torch.tensor([0.0, 2.0, 2.0])
    loss, fraction = value_loss(values, returns)
    assert loss.item() == pytest.approx(0.5 * (0.25 + 4.0 + 0.0) / 3)
    assert fraction.item() == 0.0
    loss, fraction = value_loss(values, returns, old, clip_range=0.5)
    # clipped predictions: 0.5, 2.0, 2.5 -> squared errors 1.0, 4.0, 0.25; max with unclipped per element
    assert loss.item() == pytest.approx(0.5 * (1.0 + 4.0 + 0.25) / 3)
    assert fraction.item() == pytest.approx(2 / 3)


def test_entropy_kl_and_explained_variance() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = [math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    assert entropy_from_logits(logits).tolist() == pytest.approx(expected)
    new, old = torch.tensor([-1.0, -0.5]), torch.tensor([-1.2, -0.4])
    k3 = [(math.exp(n - o) - 1) - (n - o) for n, o in zip(new.tolist(), old.tolist())]
    assert approx_kl(new, old).item() == pytest.approx(sum(k3) / 2, rel=1e-6)
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(4), target) == pytest.approx(0.0)
    assert math.isnan(explained_variance(target, torch.ones(4)))
