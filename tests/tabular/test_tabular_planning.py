"""Value iteration and exact evaluation against known figures and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rlcode.tabular import planning
from rlcode.tabular.config import QLearningConfig
from rlcode.tabular.envs import TransitionTable, episode_horizon, make_env, transition_table


def _table(**config):
    env = make_env(QLearningConfig(**config))
    return transition_table(env), episode_horizon(env)


def test_frozen_lake_4x4_figures(frozen_lake):
    _, table, horizon = frozen_lake
    assert horizon == 100
    best = planning.optimum(table, 1.0, horizon)
    assert best.infinite_horizon == pytest.approx(14 / 17, abs=1e-9)
    assert best.stationary == pytest.approx(0.7402, abs=5e-5)
    assert best.time_dependent == pytest.approx(0.7442, abs=5e-5)
    # the best stationary policy's value is its own exact value, not a number from the search
    assert planning.start_value(table, planning.evaluate_policy(table, best.policy, 1.0, horizon)) == best.stationary


def test_frozen_lake_4x4_without_time_limit():
    table, horizon = _table(max_episode_steps=0)
    assert horizon is None
    best = planning.optimum(table, 1.0, None)
    assert best.stationary == pytest.approx(14 / 17, abs=1e-9) == best.time_dependent


def test_frozen_lake_8x8_under_200_steps():
    table, horizon = _table(env="FrozenLake8x8-v1")
    assert horizon == 200
    best = planning.optimum(table, 1.0, horizon)
    assert best.time_dependent == pytest.approx(0.9132, abs=5e-5)
    assert 0.88 < best.stationary <= best.time_dependent


def test_frozen_lake_v1_8x8_keeps_100_steps():
    _, horizon = _table(map_size=8)
    assert horizon == 100


def test_best_stationary_matches_brute_force_on_a_small_map():
    # 3x3 slippery map with a 6-step limit: all 4^7 actions choices on the 7 non-terminal states.
    table, _ = _table(map_desc="SFF,FHF,FFG", max_episode_steps=6)
    free = [0, 1, 2, 3, 5, 6, 7]  # 4 is the hole, 8 the goal
    policies = np.zeros((4 ** len(free), 9), dtype=np.int64)
    for row, actions in enumerate(itertools.product(range(4), repeat=len(free))):
        policies[row, free] = actions
    brute = (planning.evaluate_policies(table, policies, 1.0, 6) @ table.initial).max()
    best = planning.optimum(table, 1.0, 6)
    assert best.stationary == pytest.approx(brute, abs=1e-12)
    assert best.time_dependent >= best.stationary


def test_backward_induction_against_brute_force_over_time_dependent_policies():
    table, _ = _table(map_desc="SF,FG", max_episode_steps=3)
    values, _ = planning.backward_induction(table, 1.0, 3)

    def best(state: int, steps_left: int) -> float:  # exhaustive recursion over action sequences
        if steps_left == 0:
            return 0.0
        return max(
            sum(p * (r + (0.0 if done else best(int(n), steps_left - 1)))
                for p, n, r, done in zip(table.probabilities[state, a], table.next_states[state, a],
                                         table.rewards[state, a], table.terminated[state, a]) if p > 0)
            for a in range(table.n_actions))

    assert values[3, 0] == pytest.approx(best(0, 3), abs=1e-12)


def test_policy_evaluation_linear_solve_matches_iteration(frozen_lake):
    _, table, _ = frozen_lake
    policy = np.random.default_rng(0).integers(0, 4, size=16)
    solved = planning.evaluate_policy(table, policy, 0.9, None)
    iterated = planning.evaluate_policy(table, policy, 0.9, 2000)
    np.testing.assert_allclose(solved, iterated, atol=1e-12)


def test_a_policy_that_never_ends_is_minus_infinity_on_cliff_walking():
    table, horizon = _table(env="CliffWalking-v1")
    assert horizon is None
    up = np.zeros(48, dtype=np.int64)  # action 0 = UP: climbs to the top row, then bumps the wall forever
    assert planning.start_value(table, planning.evaluate_policy(table, up, 1.0, None)) == -np.inf
    assert planning.optimum(table, 1.0, None).stationary == -13.0


def test_gap_percent():
    assert planning.gap_percent(0.8, 0.792) == pytest.approx(1.0)
    assert planning.gap_percent(-13.0, -17.0) == pytest.approx(100 * 4 / 13)
    assert planning.gap_percent(1.0, -np.inf) == np.inf


@pytest.mark.parametrize("map_size", [4, 8])
def test_optimal_policy_without_time_limit_reaches_the_goal(map_size):
    # Not slippery, γ = 1: V* = 1 from every state but the holes and the goal, and many actions tie
    # (walking into a wall keeps V* = 1). argmax over the ties loops at the start and earns 0.
    env = make_env(QLearningConfig(map_size=map_size, slippery=False, max_episode_steps=0))
    table, tiles = transition_table(env), np.array([cell.decode() for row in env.unwrapped.desc for cell in row])
    _, q = planning.value_iteration(table, 1.0)
    assert planning.start_value(table, planning.evaluate_policy(table, q.argmax(1), 1.0)) == 0.0
    best = planning.optimum(table, 1.0, None)
    values = planning.evaluate_policy(table, best.policy, 1.0)
    np.testing.assert_array_equal(values[np.isin(tiles, ["S", "F"])], 1.0)
    assert best.stationary == best.time_dependent == best.infinite_horizon == 1.0


def test_optimal_policy_without_time_limit_attains_v_star_everywhere_when_slippery():
    for config in (dict(), dict(env="FrozenLake8x8-v1"), dict(env="CliffWalking-v1")):
        table, _ = _table(max_episode_steps=0, **config)
        values, _ = planning.value_iteration(table, 1.0)
        best = planning.optimum(table, 1.0, None)
        np.testing.assert_allclose(planning.evaluate_policy(table, best.policy, 1.0), values, rtol=0, atol=1e-9)


def test_proper_optimal_policy_raises_when_no_optimal_policy_attains_the_values():
    # one state, one action that stays put with reward 0 forever, but handed Q = 1: nothing attains it
    ones = np.ones((1, 1, 1))
    table = TransitionTable(ones, np.zeros((1, 1, 1), np.int64), np.zeros((1, 1, 1)), np.zeros((1, 1, 1), bool),
                            np.ones((1, 1), np.int64), np.ones(1))
    with pytest.raises(RuntimeError, match="attains V"):
        planning.proper_optimal_policy(table, np.ones((1, 1)), 1.0)
