"""gae and discounted_returns against naive double loops, the λ = 0 / λ = 1 identities, and truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlcode.advantages import discounted_returns, gae


def _naive_gae(rewards, values, next_values, continues, gamma, lam):
    """A_t = Σ_k (γλ)^k δ_{t+k}, summed term by term until the episode ends (written independently)."""
    B, T = rewards.shape
    advantages = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                delta = rewards[b, k] + gamma * next_values[b, k] - values[b, k]
                total += weight * delta
                if continues[b, k] == 0:
                    break
                weight *= gamma * lam
            advantages[b, t] = total
    return advantages


def _naive_returns(rewards, continues, gamma, bootstrap=None):
    B, T = rewards.shape
    returns = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            total, discount = 0.0, 1.0
            for k in range(t, T):
                total += discount * rewards[b, k]
                discount *= gamma
                if continues[b, k] == 0:
                    if bootstrap is not None:
                        total += discount * bootstrap[b, k]
                    break
            returns[b, t] = total
    return returns


def _random_rollout(seed: int, B: int = 3, T: int = 9):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    next_values = torch.randn(B, T, generator=g, dtype=torch.float64)
    continues = (torch.rand(B, T, generator=g) > 0.25).double()
    return rewards, values, next_values, continues


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (1.0, 1.0), (0.5, 0.3)])
def test_gae_matches_naive_double_loop(seed, gamma, lam):
    rewards, values, next_values, continues = _random_rollout(seed)
    advantages, returns = gae(rewards, values, next_values, continues, gamma, lam)
    expected = _naive_gae(rewards, values, next_values, continues, gamma, lam)
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)


def test_gae_takes_numpy_arrays_and_returns_them():
    rewards, values, next_values, continues = _random_rollout(3)
    advantages, returns = gae(*(x.numpy() for x in (rewards, values, next_values, continues)), 0.99, 0.95)
    assert isinstance(advantages, np.ndarray) and isinstance(returns, np.ndarray)
    expected = _naive_gae(rewards, values, next_values, continues, 0.99, 0.95)
    torch.testing.assert_close(torch.from_numpy(advantages), expected)
    torch.testing.assert_close(torch.from_numpy(returns), expected + values)


def test_gae_lambda_zero_is_the_one_step_td_error():
    rewards, values, next_values, continues = _random_rollout(3)
    advantages, _ = gae(rewards, values, next_values, continues, 0.97, 0.0)
    torch.testing.assert_close(advantages, rewards + 0.97 * next_values - values)


def test_gae_lambda_one_is_the_bootstrapped_return_minus_the_value():
    rewards, values, bootstraps, continues = _random_rollout(4)
    gamma = 0.95
    # λ = 1: the λ-return is the discounted return that bootstraps from next_values wherever the
    # recursion stops (episode ends, and the rollout's last step); inside an episode V(s_{t+1}) is
    # the next step's value, so the telescoping sum cancels it
    stop = continues.clone()
    stop[:, -1] = 0.0
    next_values = torch.where(stop.bool(), torch.cat([values[:, 1:], values[:, :1]], dim=1), bootstraps)
    expected_returns = _naive_returns(rewards, stop, gamma, bootstrap=next_values)
    advantages, returns = gae(rewards, values, next_values, stop, gamma, 1.0)
    torch.testing.assert_close(returns, expected_returns)
    torch.testing.assert_close(advantages, expected_returns - values)


@pytest.mark.parametrize("seed", [0, 5])
def test_discounted_returns_match_naive_loop(seed):
    rewards, _, next_values, continues = _random_rollout(seed)
    torch.testing.assert_close(discounted_returns(rewards, continues, 0.9), _naive_returns(rewards, continues, 0.9))
    torch.testing.assert_close(
        discounted_returns(rewards, continues, 0.9, bootstrap=next_values),
        _naive_returns(rewards, continues, 0.9, bootstrap=next_values),
    )


def test_bootstrapping_from_the_final_observation_of_a_truncated_episode_changes_the_answer():
    # one env, reward 1 per step; the episode is cut by a time limit after step 2 (continues = 0)
    # and the next episode starts at step 3. V(final observation) = 10 must enter A_2 and A_1 ...
    rewards = torch.ones(1, 5, dtype=torch.float64)
    values = torch.zeros(1, 5, dtype=torch.float64)
    continues = torch.tensor([[1.0, 1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    truncated_next = torch.tensor([[0.0, 0.0, 10.0, 0.0, 0.0]], dtype=torch.float64)  # V(final obs) at t=2
    terminated_next = torch.zeros(1, 5, dtype=torch.float64)  # a true terminal bootstraps 0
    gamma, lam = 0.5, 1.0
    bootstrapped, _ = gae(rewards, values, truncated_next, continues, gamma, lam)
    as_terminal, _ = gae(rewards, values, terminated_next, continues, gamma, lam)
    # A_2 = 1 + 0.5*10 = 6, A_1 = 1 + 0.5*6 = 4, A_0 = 1 + 0.5*4 = 3; as a terminal: 1, 1.5, 1.75
    torch.testing.assert_close(bootstrapped[0, :3], torch.tensor([3.0, 4.0, 6.0], dtype=torch.float64))
    torch.testing.assert_close(as_terminal[0, :3], torch.tensor([1.75, 1.5, 1.0], dtype=torch.float64))
    # ... and never leak into the next episode (steps 3, 4 are the same either way)
    torch.testing.assert_close(bootstrapped[0, 3:], as_terminal[0, 3:])
    returns = discounted_returns(rewards, continues, gamma, bootstrap=truncated_next)
    torch.testing.assert_close(returns[0, :3], torch.tensor([3.0, 4.0, 6.0], dtype=torch.float64))
