"""Exact policy evaluation without a time limit: hand-solved chains, slow mixing, loops that never end."""

from __future__ import annotations

import numpy as np
import pytest

from rlcode.tabular import planning
from rlcode.tabular.config import QLearningConfig
from rlcode.tabular.envs import TransitionTable, make_env, transition_table

END = -1  # an outcome that terminates


def chain(outcomes: list[list[tuple[float, int, float]]]) -> TransitionTable:
    """A one-action table: outcomes[s] = [(probability, next state or END, reward), ...]; starts in state 0."""
    n, width = len(outcomes), max(len(row) for row in outcomes)
    probabilities, rewards = np.zeros((n, 1, width)), np.zeros((n, 1, width))
    next_states, terminated = np.zeros((n, 1, width), np.int64), np.zeros((n, 1, width), bool)
    for state, row in enumerate(outcomes):
        for k, (probability, next_state, reward) in enumerate(row):
            probabilities[state, 0, k], rewards[state, 0, k] = probability, reward
            next_states[state, 0, k] = state if next_state == END else next_state
            terminated[state, 0, k] = next_state == END
    counts = np.array([[len(row)] for row in outcomes], np.int64)
    return TransitionTable(probabilities, next_states, rewards, terminated, counts, np.eye(n)[0])


def values_of(table: TransitionTable, gamma: float = 1.0) -> np.ndarray:
    return planning.evaluate_policy(table, np.zeros(table.n_states, np.int64), gamma)


def test_gamblers_ruin_absorption_probabilities():
    # States 0, 1, 2 hold 1, 2, 3 coins; a bet wins a coin with p = 0.6 and loses it with q = 0.4.
    # Losing the last coin ends with reward 0, reaching 4 coins ends with reward 1, so the value is
    # the probability of reaching 4: v0 = 0.6 v1, v1 = 0.4 v0 + 0.6 v2, v2 = 0.4 v1 + 0.6.
    # Substituting v0 into v1: v1 = 0.24 v1 + 0.6 v2, so v1 = (15/19) v2; then
    # v2 = 0.4 (15/19) v2 + 0.6 gives v2 (13/19) = 0.6, v2 = 57/65, v1 = 45/65, v0 = 27/65
    # (the textbook (1 − (q/p)^k) / (1 − (q/p)^4) with q/p = 2/3).
    table = chain([[(0.6, 1, 0.0), (0.4, END, 0.0)],
                   [(0.6, 2, 0.0), (0.4, 0, 0.0)],
                   [(0.6, END, 1.0), (0.4, 1, 0.0)]])
    np.testing.assert_allclose(values_of(table), [27 / 65, 45 / 65, 57 / 65], rtol=0, atol=1e-14)


def test_a_slowly_mixing_proper_policy_is_finite():
    # Stays put with probability 0.999 (reward 0), ends with reward 1 otherwise: it ends with
    # probability 1, so its value is 1 at γ = 1, and v = 0.001 / (1 − 0.999 γ) at γ < 1.
    # Sweeps to convergence move by ~1e-3 · 0.999^t per step: slow enough to be taken for divergence.
    table = chain([[(0.999, 0, 0.0), (0.001, END, 1.0)]])
    assert values_of(table)[0] == pytest.approx(1.0, abs=1e-12)
    for gamma in (0.9, 0.999, 0.9999):
        assert values_of(table, gamma)[0] == pytest.approx(0.001 / (1 - 0.999 * gamma), rel=1e-12)


def test_loops_that_never_end():
    table = chain([
        [(1.0, 1, 0.0)],                    # 0 -> 1, a 0-reward loop: 0 (not inf)
        [(1.0, 0, 0.0)],
        [(1.0, 2, -1.0)],                   # 2: pays -1 forever: -inf
        [(0.5, 2, 0.0), (0.5, END, 1.0)],   # 3: ends or falls into 2: -inf
        [(0.5, 0, 0.0), (0.5, END, 1.0)],   # 4: ends or falls into the 0-reward loop: 0.5
        [(1.0, 5, 2.0)],                    # 5: earns +2 forever: +inf
        [(0.5, 5, 0.0), (0.5, 2, 0.0)],     # 6: +inf or -inf: no value
        [(1.0, 8, 1.0)],                    # 7, 8: +1, -1, +1, ...: zero gain, no limit
        [(1.0, 7, -1.0)],
    ])
    values = values_of(table)
    np.testing.assert_array_equal(values[:6], [0.0, 0.0, -np.inf, -np.inf, 0.5, np.inf])
    assert np.isnan(values[6:]).all()


def test_frozen_lake_8x8_slippery_always_right():
    table = transition_table(make_env(QLearningConfig(env="FrozenLake8x8-v1", max_episode_steps=0)))
    right = np.full(64, 2)
    assert planning.start_value(table, planning.evaluate_policy(table, right, 1.0)) == pytest.approx(
        0.352502, abs=1e-6)


def test_cliff_walking_uniform_policy_discounted():
    table = transition_table(make_env(QLearningConfig(env="CliffWalking-v1", max_episode_steps=0)))
    values = planning.evaluate_stochastic_policy(table, np.full((48, 4), 0.25), 0.99)
    assert planning.start_value(table, values) == pytest.approx(-1072.236, abs=1e-3)


def test_a_zero_reward_loop_is_worth_zero_and_a_costly_one_minus_infinity():
    frozen = transition_table(make_env(QLearningConfig(slippery=False, max_episode_steps=0)))
    left = np.zeros(16, np.int64)  # walks into the left wall forever, earning 0
    assert planning.start_value(frozen, planning.evaluate_policy(frozen, left, 1.0)) == 0.0
    cliff = transition_table(make_env(QLearningConfig(env="CliffWalking-v1", max_episode_steps=0)))
    left = np.full(48, 3)  # bumps into the left wall forever at -1 a step
    assert planning.start_value(cliff, planning.evaluate_policy(cliff, left, 1.0)) == -np.inf


@pytest.mark.parametrize("env", ["FrozenLake8x8-v1", "CliffWalking-v1"])
def test_greedy_policy_of_value_iteration_attains_its_values_when_discounted(env):
    table = transition_table(make_env(QLearningConfig(env=env, max_episode_steps=0)))
    values, q = planning.value_iteration(table, 0.95)
    np.testing.assert_allclose(planning.evaluate_policy(table, q.argmax(1), 0.95), values, rtol=0, atol=1e-9)
