"""Exact planning on a transition table: value iteration, policy evaluation, finite-horizon optima.

Under a TimeLimit of H steps the best policy is time-dependent (backward induction, Puterman 1994
§4.5); a Q-table's greedy policy is stationary, and the best stationary policy can score lower
(FrozenLake 4x4 slippery, H=100: 0.7402 vs 0.7442). No known algorithm finds the best stationary
policy in polynomial time, so ``best_stationary_policy`` runs steepest coordinate ascent, each
candidate evaluated exactly, from several starts (value-iteration policies for a few discounts and
the time-dependent policy's first and middle steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlcode.tabular.envs import TransitionTable


def action_values(table: TransitionTable, values: np.ndarray, gamma: float) -> np.ndarray:
    """Q(s, a) = Σ_k p_k (r_k + γ [not terminated_k] V(s'_k)) for all s, a; returns [S, A]."""
    return table.expected_rewards + gamma * (table.continuing * values[table.next_states]).sum(-1)


def value_iteration(table: TransitionTable, gamma: float, tolerance: float = 1e-12,
                    max_iterations: int = 1_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Infinite-horizon optimal (V [S], Q [S, A]); γ = 1 works when every optimal policy terminates."""
    values = np.zeros(table.n_states)
    for _ in range(max_iterations):
        q = action_values(table, values, gamma)
        new_values = q.max(1)
        if np.abs(new_values - values).max() < tolerance:
            return new_values, q
        values = new_values
    raise RuntimeError(f"value iteration did not converge in {max_iterations} sweeps at gamma={gamma}; "
                       "the undiscounted problem has no finite optimum here, use gamma < 1 or a time limit.")


def backward_induction(table: TransitionTable, gamma: float, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite-horizon optimum: values [H+1, S] with values[k] = best return with k steps left, and
    the time-dependent policy [H, S] with policies[k-1] = best action with k steps left."""
    values = np.zeros((horizon + 1, table.n_states))
    policies = np.zeros((horizon, table.n_states), dtype=np.int64)
    for steps_left in range(1, horizon + 1):
        q = action_values(table, values[steps_left - 1], gamma)
        policies[steps_left - 1] = q.argmax(1)
        values[steps_left] = q.max(1)
    return values, policies


def _policy_arrays(table: TransitionTable, policies: np.ndarray) -> tuple[np.ndarray, ...]:
    states = np.arange(table.n_states)
    rewards = table.expected_rewards[states, policies]  # [..., S]
    continuing = table.continuing[states, policies]  # [..., S, K]
    next_states = table.next_states[states, policies]  # [..., S, K]
    return rewards, continuing, next_states


def evaluate_policies(table: TransitionTable, policies: np.ndarray, gamma: float, horizon: int) -> np.ndarray:
    """Exact H-step values of a batch of stationary deterministic policies [D, S]; returns [D, S]."""
    rewards, continuing, next_states = _policy_arrays(table, policies)
    rows = np.arange(policies.shape[0])[:, None, None]
    values = np.zeros(policies.shape)  # [D, S]
    for _ in range(horizon):
        values = rewards + gamma * (continuing * values[rows, next_states]).sum(-1)
    return values


def evaluate_policy(table: TransitionTable, policy: np.ndarray, gamma: float = 1.0,
                    horizon: int | None = None, tolerance: float = 1e-12) -> np.ndarray:
    """Exact values [S] of a deterministic policy: H steps, or the infinite horizon when None.

    With γ < 1 it solves (I − γ P_π) V = r_π. With γ = 1 it iterates; a state whose value still
    moves by the same amount every sweep never terminates and gets ±inf (e.g. walking into a wall
    with reward −1 forever); loops with zero reward keep their finite value.
    """
    policy = np.asarray(policy, dtype=np.int64)
    if horizon is not None:
        return evaluate_policies(table, policy[None], gamma, horizon)[0]
    rewards, continuing, next_states = _policy_arrays(table, policy)
    if gamma < 1.0:
        transition = np.zeros((table.n_states, table.n_states))
        np.add.at(transition, (np.arange(table.n_states)[:, None].repeat(next_states.shape[1], 1), next_states),
                  continuing)
        return np.linalg.solve(np.eye(table.n_states) - gamma * transition, rewards)
    return evaluate_stochastic_policy(table, np.eye(table.n_actions)[policy], gamma, None, tolerance)


def evaluate_stochastic_policy(table: TransitionTable, probabilities: np.ndarray, gamma: float = 1.0,
                               horizon: int | None = None, tolerance: float = 1e-12) -> np.ndarray:
    """Exact values [S] of a policy given as action probabilities [S, A], by H sweeps or to convergence."""
    rewards = (probabilities * table.expected_rewards).sum(1)  # [S]
    values, change = np.zeros(table.n_states), np.zeros(table.n_states)
    for sweep in range(horizon if horizon is not None else 200_000):
        future = (table.continuing * values[table.next_states]).sum(-1)  # [S, A]
        new_values = rewards + gamma * (probabilities * future).sum(1)
        new_change, values = new_values - values, new_values
        if horizon is not None:
            continue
        if np.abs(new_change).max() < tolerance:
            return values
        if sweep > 1000 and np.abs(new_change - change).max() < tolerance:
            break  # what still moves, moves at a constant rate: those states never terminate
        change = new_change
    if horizon is None:
        moving = np.abs(new_change) >= tolerance
        values[moving] = np.sign(new_change[moving]) * np.inf
    return values


def start_value(table: TransitionTable, values: np.ndarray) -> float:
    """Expected value from the env's start-state distribution."""
    finite = table.initial > 0
    return float(table.initial[finite] @ values[..., finite].T)


def best_stationary_policy(table: TransitionTable, gamma: float, horizon: int,
                           starts: Sequence[np.ndarray], max_rounds: int = 10_000) -> tuple[np.ndarray, float]:
    """Best stationary policy found by steepest coordinate ascent on the exact H-step start value."""
    S, A = table.n_states, table.n_actions
    changed_state = np.repeat(np.arange(S), A)  # every single-state change: [S*A]
    changed_action = np.tile(np.arange(A), S)
    best_policy, best_value = np.asarray(starts[0]), -np.inf
    start_values = evaluate_policies(table, np.stack(starts), gamma, horizon) @ table.initial
    for index in np.argsort(-start_values)[:3]:
        policy, value = np.asarray(starts[index]).copy(), float(start_values[index])
        for _ in range(max_rounds):
            candidates = np.repeat(policy[None], S * A, axis=0)  # [S*A, S]
            candidates[np.arange(S * A), changed_state] = changed_action
            values = evaluate_policies(table, candidates, gamma, horizon) @ table.initial  # [S*A]
            if values.max() <= value + 1e-13:
                break
            policy, value = candidates[values.argmax()], float(values.max())
        if value > best_value:
            best_policy, best_value = policy, value
    return best_policy, best_value


@dataclass(frozen=True)
class Optimum:
    """Start-state optima under one discount; stationary == time_dependent without a time limit."""

    gamma: float
    horizon: int | None
    infinite_horizon: float | None  # None when the undiscounted infinite-horizon problem is unbounded
    stationary: float
    time_dependent: float
    policy: np.ndarray  # [S] a best stationary policy


def optimum(table: TransitionTable, gamma: float = 1.0, horizon: int | None = None) -> Optimum:
    """The exact optimum from the start distribution, with the best stationary policy."""
    try:
        infinite_values, infinite_q = value_iteration(table, gamma)
        infinite: float | None = start_value(table, infinite_values)
    except RuntimeError:
        infinite_q, infinite = None, None
    if horizon is None:
        if infinite_q is None:
            raise RuntimeError("the undiscounted problem without a time limit has no finite optimum here; "
                               "set max_episode_steps or gamma < 1.")
        assert infinite is not None
        return Optimum(gamma, None, infinite, infinite, infinite, infinite_q.argmax(1))
    values, policies = backward_induction(table, gamma, horizon)
    time_dependent = start_value(table, values[horizon])
    starts = [policies[horizon - 1], policies[horizon // 2]]
    for start_gamma in (0.99, 0.999, 1.0):
        if start_gamma <= gamma:
            try:
                starts.insert(0, value_iteration(table, start_gamma, max_iterations=100_000)[1].argmax(1))
            except RuntimeError:
                pass
    start_values = evaluate_policies(table, np.stack(starts), gamma, horizon) @ table.initial
    if start_values.max() >= time_dependent - 1e-12:  # a stationary policy already reaches the bound
        policy, stationary = starts[int(start_values.argmax())], float(start_values.max())
    else:
        policy, stationary = best_stationary_policy(table, gamma, horizon, starts)
    return Optimum(gamma, horizon, infinite, stationary, time_dependent, policy)


def gap_percent(optimum_value: float, value: float) -> float:
    """How far ``value`` falls short of ``optimum_value``, in percent of |optimum| (0 if optimum is 0)."""
    if not np.isfinite(value):
        return float("inf")
    scale = abs(optimum_value)
    return 0.0 if scale == 0 else float(100.0 * (optimum_value - value) / scale)
