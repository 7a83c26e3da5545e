"""One TD-control loop for Q-learning, SARSA and expected SARSA, on a transition table or an env.

Both paths draw from the same xoshiro stream and call the same compiled ``td_update``; they differ
only in where a transition comes from: ``fast.run_episodes`` samples it from ``env.unwrapped.P``
inside numba, ``run_env_episodes`` calls gymnasium's ``env.step`` (for envs without a table).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rlcode.tabular import fast
from rlcode.tabular.config import TabularConfig
from rlcode.tabular.envs import TransitionTable

Schedule = Callable[[float], float]  # training progress in [0, 1] -> value
SCHEDULE_KNOTS = 1025  # the numba loop reads schedules tabulated at this many evenly spaced points


def constant_schedule(value: float) -> Schedule:
    return lambda progress: value


def linear_schedule(start: float, end: float, fraction: float = 1.0) -> Schedule:
    """From start to end linearly over the first ``fraction`` of training, then flat."""
    return lambda progress: end if progress >= fraction else start + (end - start) * progress / fraction


def exponential_schedule(start: float, end: float, fraction: float = 1.0) -> Schedule:
    """Geometric interpolation from start to end over the first ``fraction`` of training (start, end > 0)."""
    return lambda progress: end if progress >= fraction else start * (end / start) ** (progress / fraction)


def schedules(config: TabularConfig) -> tuple[Schedule, Schedule]:
    """The (epsilon, learning-rate) schedules a config describes."""
    epsilon = linear_schedule(config.epsilon_start, config.epsilon_end, config.epsilon_decay_fraction)
    makers = {"linear": linear_schedule, "exponential": exponential_schedule}
    if config.learning_rate_decay == "constant":
        learning_rate = constant_schedule(config.learning_rate)
    else:
        learning_rate = makers[config.learning_rate_decay](config.learning_rate, config.learning_rate_end)
    return epsilon, learning_rate


def tabulate(schedule: Schedule, knots: int = SCHEDULE_KNOTS) -> np.ndarray:
    """Sample a schedule at evenly spaced progress points for ``fast.interpolate``."""
    return np.array([schedule(i / (knots - 1)) for i in range(knots)], dtype=np.float64)


def run_table_episodes(q: np.ndarray, table: TransitionTable, algorithm: str, gamma: float,
                       epsilon: Schedule, learning_rate: Schedule, first_episode: int, n_episodes: int,
                       total_episodes: int, horizon: int, rng: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Fast path: ``n_episodes`` episodes sampled from the table; returns (updates, returns, lengths)."""
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, dtype=np.int64)
    initial = np.cumsum(table.initial)
    updates = fast.run_episodes(
        q, table.cumulative, table.outcome_counts, table.next_states, table.rewards, table.terminated,
        initial, fast.ALGORITHM_CODES[algorithm], gamma, tabulate(epsilon), tabulate(learning_rate),
        first_episode, n_episodes, total_episodes, horizon, rng, returns, lengths)
    return int(updates), returns, lengths


def run_env_episodes(q: np.ndarray, env: Any, algorithm: str, gamma: float, epsilon: Schedule,
                     learning_rate: Schedule, first_episode: int, n_episodes: int, total_episodes: int,
                     rng: np.ndarray, seed: int | None = None) -> tuple[int, np.ndarray, np.ndarray]:
    """Plain path: the same loop calling ``env.step``; truncation bootstraps, termination does not."""
    code = fast.ALGORITHM_CODES[algorithm]
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, dtype=np.int64)
    updates = 0
    for episode in range(n_episodes):
        progress = (first_episode + episode) / total_episodes
        eps, alpha = epsilon(progress), learning_rate(progress)
        state, _ = env.reset(seed=seed if episode == 0 and first_episode == 0 else None)
        action = fast.choose_action(q, int(state), eps, rng)
        total, steps, done = 0.0, 0, False
        while not done:
            next_state, reward, terminated, truncated, _ = env.step(action)
            next_state, steps, done = int(next_state), steps + 1, terminated or truncated
            next_action = 0
            if code == fast.SARSA and not terminated:
                next_action = fast.choose_action(q, next_state, eps, rng)
            fast.td_update(q, int(state), action, float(reward), next_state, bool(terminated), alpha, gamma,
                           code, eps, next_action)
            total += float(reward)
            updates += 1
            if code != fast.SARSA and not done:
                next_action = fast.choose_action(q, next_state, eps, rng)
            state, action = next_state, next_action
        returns[episode], lengths[episode] = total, steps
    return updates, returns, lengths


def greedy_policy(q: np.ndarray) -> np.ndarray:
    """The deterministic greedy policy [S] read off a Q-table (lowest index among exact ties)."""
    return q.argmax(axis=1)
