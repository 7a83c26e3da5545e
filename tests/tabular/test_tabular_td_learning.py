"""The TD update by hand, the table sampler against env.step, reproducibility and learning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlcode.tabular import fast, planning
from rlcode.tabular.config import ExpectedSarsaConfig, QLearningConfig, SarsaConfig
from rlcode.tabular.envs import make_env, transition_table
from rlcode.tabular.td_learning import (
    exponential_schedule,
    linear_schedule,
    run_env_episodes,
    run_table_episodes,
    tabulate,
)
from rlcode.tabular.train import load_run, train

Q = np.array([[0.0, 0.0, 0.0], [1.0, 4.0, 4.0], [2.0, -1.0, 0.5]])


@pytest.mark.parametrize(
    "algorithm, expected",
    [
        # Q(0,2) = 0 + 0.5 * (1 + 0.9 * max(1, 4, 4) - 0) = 2.3
        (fast.QLEARNING, 2.3),
        # SARSA with a' = 0: 0.5 * (1 + 0.9 * 1) = 0.95
        (fast.SARSA, 0.95),
        # expected SARSA, ε = 0.3, greedy ties share 0.7: 0.7*4 + 0.3*(1+4+4)/3 = 3.7 -> 0.5*(1 + 0.9*3.7)
        (fast.EXPECTED_SARSA, 2.165),
    ],
)
def test_td_update_by_hand(algorithm, expected):
    q = Q.copy()
    error = fast.td_update(q, 0, 2, 1.0, 1, False, 0.5, 0.9, algorithm, 0.3, 0)
    assert q[0, 2] == pytest.approx(expected, abs=1e-12)
    assert error == pytest.approx(2 * expected, abs=1e-12)
    assert (np.delete(q.ravel(), 2) == np.delete(Q.ravel(), 2)).all()


@pytest.mark.parametrize("algorithm", [fast.QLEARNING, fast.SARSA, fast.EXPECTED_SARSA])
def test_termination_cuts_the_bootstrap(algorithm):
    q = Q.copy()
    fast.td_update(q, 2, 0, 1.0, 1, True, 0.5, 0.9, algorithm, 0.3, 1)
    assert q[2, 0] == pytest.approx(2.0 + 0.5 * (1.0 - 2.0))


def test_truncation_bootstraps_but_termination_does_not():
    # One-state env whose only transition truncates at the 1-step time limit: the target must keep γ·max Q.
    from rlcode.tabular.envs import TransitionTable

    ones = np.ones((1, 1, 1))
    table = TransitionTable(ones, np.zeros((1, 1, 1), np.int64), ones, np.zeros((1, 1, 1), bool),
                            np.ones((1, 1), np.int64), np.ones(1))
    q = np.full((1, 1), 10.0)
    run_table_episodes(q, table, "qlearning", 0.5, lambda p: 0.0, lambda p: 1.0, 0, 1, 1, 1, fast.seed_stream(0))
    assert q[0, 0] == 1.0 + 0.5 * 10.0
    terminal = TransitionTable(ones, np.zeros((1, 1, 1), np.int64), ones, np.ones((1, 1, 1), bool),
                               np.ones((1, 1), np.int64), np.ones(1))
    run_table_episodes(q, terminal, "qlearning", 0.5, lambda p: 0.0, lambda p: 1.0, 0, 1, 1, 1, fast.seed_stream(0))
    assert q[0, 0] == 1.0


@pytest.mark.parametrize("backend", ["table", "env"])
def test_time_limit_truncation_bootstraps_on_both_paths(tmp_path, backend):
    # One 1-step episode from state 0 of the solid 4x4 lake: every move lands on a non-terminal state,
    # the 1-step TimeLimit truncates, and the target must be 0 + γ·max Q(s') = 0.5 * 5, not 0.
    config = QLearningConfig(slippery=False, max_episode_steps=1, initial_q=5.0, gamma=0.5, learning_rate=1.0,
                             learning_rate_decay="constant", epsilon_start=0.0, epsilon_end=0.0, episodes=1,
                             log_points=1, eval_episodes=1, backend=backend)
    train(config, run_dir=tmp_path, quiet=True)
    q = load_run(tmp_path)[1]
    assert sorted(q[0]) == [2.5, 5.0, 5.0, 5.0]
    assert (q[1:] == 5.0).all()


def test_greedy_ties_are_broken_uniformly():
    q = np.array([[1.0, 3.0, 3.0, 3.0]])
    rng = fast.seed_stream(7)
    counts = np.bincount([fast.choose_action(q, 0, 0.0, rng) for _ in range(30_000)], minlength=4)
    assert counts[0] == 0
    assert np.abs(counts[1:] / 30_000 - 1 / 3).max() < 0.01


def test_uniform_stream_is_uniform_and_seeded():
    rng = fast.seed_stream(123)
    draws = np.array([fast.uniform(rng) for _ in range(100_000)])
    assert 0.0 <= draws.min() and draws.max() < 1.0
    assert abs(draws.mean() - 0.5) < 0.005
    again = fast.seed_stream(123)
    assert [fast.uniform(again) for _ in range(5)] == list(draws[:5])
    assert not np.array_equal(fast.seed_stream(124), fast.seed_stream(123))


def test_schedules_and_their_tabulation():
    linear = linear_schedule(1.0, 0.1, 0.5)
    assert linear(0.0) == 1.0 and linear(0.25) == pytest.approx(0.55) and linear(0.5) == linear(1.0) == 0.1
    exponential = exponential_schedule(0.1, 0.001)
    assert exponential(0.5) == pytest.approx(0.01)
    knots = tabulate(linear)
    assert fast.interpolate(knots, 0.25) == pytest.approx(0.55) and fast.interpolate(knots, 1.0) == 0.1


def _p_value_chi_square(statistic: float, dof: int) -> float:
    """Upper tail of χ²(dof) by the Wilson–Hilferty normal approximation (no scipy needed)."""
    z = ((statistic / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def _two_sample_chi_square(a: np.ndarray, b: np.ndarray) -> float:
    keep = (a + b) > 0
    a, b = a[keep].astype(float), b[keep].astype(float)
    na, nb = a.sum(), b.sum()
    statistic = float((((a * math.sqrt(nb / na) - b * math.sqrt(na / nb)) ** 2) / (a + b)).sum())
    return _p_value_chi_square(statistic, int(keep.sum()) - 1)


def _next_state_counts_env(env, state: int, action: int, n: int) -> np.ndarray:
    env.reset(seed=0)
    counts = np.zeros(env.observation_space.n, dtype=np.int64)
    for _ in range(n):
        env.unwrapped.s = state
        counts[int(env.step(action)[0])] += 1
    return counts


def _next_state_counts_table(table, state: int, action: int, n: int, seed: int) -> np.ndarray:
    picks = fast.sample_indices(table.cumulative[state, action], int(table.outcome_counts[state, action]), n,
                                fast.seed_stream(seed))
    return np.bincount(table.next_states[state, action][picks], minlength=table.n_states)


def test_fast_path_transition_frequencies_match_env_step(frozen_lake):
    env, table, _ = frozen_lake
    p_values = []
    for state, action in [(0, 0), (0, 2), (1, 1), (6, 3), (9, 2), (14, 2)]:
        p_values.append(_two_sample_chi_square(_next_state_counts_env(env, state, action, 3000),
                                               _next_state_counts_table(table, state, action, 3000, seed=state)))
    assert min(p_values) > 1e-3, p_values
    # the test can fail: a non-slippery table against the slippery env is rejected outright
    deterministic = transition_table(make_env(QLearningConfig(slippery=False)))
    wrong = _two_sample_chi_square(_next_state_counts_env(env, 6, 3, 3000),
                                   _next_state_counts_table(deterministic, 6, 3, 3000, seed=1))
    assert wrong < 1e-9


def test_fast_path_episodes_match_env_loop_episodes(frozen_lake):
    # A uniformly random policy with no learning (α = 0): episode lengths (terminations and the
    # 100-step truncation included) and returns must have the same distribution on both paths.
    env, table, horizon = frozen_lake
    n = 4000
    q = np.zeros((16, 4))
    _, table_returns, table_lengths = run_table_episodes(
        q, table, "qlearning", 0.9, lambda p: 1.0, lambda p: 0.0, 0, n, n, horizon, fast.seed_stream(1))
    _, env_returns, env_lengths = run_env_episodes(
        q, env, "qlearning", 0.9, lambda p: 1.0, lambda p: 0.0, 0, n, n, fast.seed_stream(2), seed=3)
    bins = np.array([1, 2, 3, 4, 6, 8, 11, 15, 20, 30, 101])
    p_lengths = _two_sample_chi_square(np.histogram(table_lengths, bins)[0], np.histogram(env_lengths, bins)[0])
    p_returns = _two_sample_chi_square(np.bincount(table_returns.astype(int), minlength=2),
                                       np.bincount(env_returns.astype(int), minlength=2))
    assert p_lengths > 1e-3 and p_returns > 1e-3, (p_lengths, p_returns)


def test_reproducible_bit_for_bit(tmp_path):
    config = QLearningConfig(episodes=3000, seed=11, eval_episodes=10)
    train(config, run_dir=tmp_path / "a", quiet=True)
    train(config, run_dir=tmp_path / "b", quiet=True)
    train(QLearningConfig(episodes=3000, seed=12, eval_episodes=10), run_dir=tmp_path / "c", quiet=True)
    q_a, q_b, q_c = (load_run(tmp_path / name)[1] for name in "abc")
    assert q_a.tobytes() == q_b.tobytes()
    assert q_a.tobytes() != q_c.tobytes()


def test_logging_cadence_does_not_change_the_run(tmp_path):
    # the stream runs on across chunks and schedules read the global episode index
    one = train(QLearningConfig(episodes=2000, log_points=1, eval_episodes=10), run_dir=tmp_path / "a", quiet=True)
    many = train(QLearningConfig(episodes=2000, log_points=7, eval_episodes=10), run_dir=tmp_path / "b", quiet=True)
    assert load_run(tmp_path / "a")[1].tobytes() == load_run(tmp_path / "b")[1].tobytes()
    assert one["updates"] == many["updates"]


def test_env_loop_is_reproducible_and_learns_deterministic_lake(tmp_path):
    config = QLearningConfig(slippery=False, episodes=400, backend="env", seed=3, eval_episodes=5)
    first = train(config, run_dir=tmp_path / "a", quiet=True)
    second = train(config, run_dir=tmp_path / "b", quiet=True)
    assert load_run(tmp_path / "a")[1].tobytes() == load_run(tmp_path / "b")[1].tobytes()
    assert first["mean_return"] == second["mean_return"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qlearning_reaches_the_optimum_on_slippery_frozen_lake(tmp_path, seed):
    result = train(QLearningConfig(episodes=20_000, seed=seed, eval_episodes=10), run_dir=tmp_path, quiet=True)
    assert result["optimum_stationary"] == pytest.approx(0.7402, abs=5e-5)
    assert result["gap_percent"] <= 1.0, result


def test_default_qlearning_run_is_within_one_percent(tmp_path):
    result = train(QLearningConfig(), run_dir=tmp_path, quiet=True)
    assert result["gap_percent"] <= 1.0


def test_sarsa_learns_the_safe_path_and_qlearning_the_optimal_one_on_cliff_walking(tmp_path):
    # Sutton & Barto, Example 6.6: with ε = 0.1 throughout, SARSA's greedy path keeps away from the
    # cliff (longer, lower return), Q-learning's walks along it (return -13, the optimum).
    common = dict(env="CliffWalking-v1", gamma=1.0, epsilon_start=0.1, epsilon_end=0.1, learning_rate=0.5,
                  learning_rate_end=0.05, learning_rate_decay="linear", episodes=1000, seed=0, eval_episodes=1)
    q_result = train(QLearningConfig(**common), run_dir=tmp_path / "q", quiet=True)
    s_result = train(SarsaConfig(**common), run_dir=tmp_path / "s", quiet=True)
    assert q_result["exact_value"] == q_result["optimum_stationary"] == -13.0
    assert -25.0 <= s_result["exact_value"] <= -15.0
    table = transition_table(make_env(QLearningConfig(env="CliffWalking-v1")))

    def epsilon_greedy_value(run_dir) -> float:
        q = load_run(run_dir)[1]
        probabilities = np.full(q.shape, 0.1 / 4)
        probabilities[np.arange(48), q.argmax(1)] += 0.9
        return planning.start_value(table, planning.evaluate_stochastic_policy(table, probabilities))

    # ... and while exploring, SARSA's policy earns more: the reason it took the safe path
    assert epsilon_greedy_value(tmp_path / "s") > epsilon_greedy_value(tmp_path / "q") + 10


def test_expected_sarsa_and_taxi(tmp_path):
    result = train(ExpectedSarsaConfig(env="Taxi-v4", episodes=20_000, epsilon_end=0.01, eval_episodes=10),
                   run_dir=tmp_path, quiet=True)
    assert result["gap_percent"] <= 1.0
