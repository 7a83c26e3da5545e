"""Numba kernels of the TD loop: a seedable random stream, ε-greedy, the TD update, whole episodes.

The random stream is xoshiro256+ (Blackman & Vigna 2018): four uint64 words, kept in a ``uint64[4]``
array between calls (so the state goes into ``state.json``) and in registers inside the loops. The
same functions serve the compiled table loop and the plain env loop. Everything is compiled with ``cache=True``: the first run in a fresh
checkout pays the compile once (reported separately), later runs load it from ``__pycache__``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

QLEARNING, SARSA, EXPECTED_SARSA = 0, 1, 2
ALGORITHM_CODES = {"qlearning": QLEARNING, "sarsa": SARSA, "expected-sarsa": EXPECTED_SARSA}
_MASK64 = (1 << 64) - 1


def seed_stream(seed: int) -> np.ndarray:
    """The xoshiro state for ``seed``, expanded with splitmix64 as its authors recommend."""
    state, words = seed & _MASK64, []
    for _ in range(4):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        words.append(z ^ (z >> 31))
    return np.array(words, dtype=np.uint64)


@njit(cache=True, inline="always")
def next_uniform(stream: tuple) -> tuple:
    """(u, stream): a float in [0, 1) from the top 53 bits of xoshiro256+ and the advanced state.

    The state travels as a tuple of four uint64 so that it lives in registers inside the loops
    (2-3x faster than reading and writing an array that might alias the Q-table).
    """
    s0, s1, s2, s3 = stream
    result = s0 + s3
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << np.uint64(45)) | (s3 >> np.uint64(19))
    return float(result >> np.uint64(11)) * (1.0 / 9007199254740992.0), (s0, s1, s2, s3)


@njit(cache=True, inline="always")
def greedy_action(q: np.ndarray, state: int, stream: tuple) -> tuple:
    """(argmax_a Q(state, a), stream), ties broken uniformly at random by reservoir sampling."""
    best, action, ties = q[state, 0], 0, 1
    for a in range(1, q.shape[1]):
        value = q[state, a]
        if value > best:
            best, action, ties = value, a, 1
        elif value == best:
            ties += 1
            u, stream = next_uniform(stream)
            if u * ties < 1.0:
                action = a
    return action, stream


@njit(cache=True, inline="always")
def epsilon_greedy(q: np.ndarray, state: int, epsilon: float, stream: tuple) -> tuple:
    u, stream = next_uniform(stream)
    if u < epsilon:
        u, stream = next_uniform(stream)
        return int(u * q.shape[1]), stream
    return greedy_action(q, state, stream)


@njit(cache=True)
def load_stream(rng: np.ndarray) -> tuple:
    return (rng[0], rng[1], rng[2], rng[3])


@njit(cache=True)
def store_stream(rng: np.ndarray, stream: tuple) -> None:
    rng[0], rng[1], rng[2], rng[3] = stream


@njit(cache=True)
def uniform(rng: np.ndarray) -> float:
    """One draw from the array-held stream ``rng`` (uint64[4], advanced in place); for Python callers."""
    u, stream = next_uniform(load_stream(rng))
    store_stream(rng, stream)
    return u


@njit(cache=True)
def choose_action(q: np.ndarray, state: int, epsilon: float, rng: np.ndarray) -> int:
    """ε-greedy action drawn from the array-held stream ``rng``; for the Python env loop."""
    action, stream = epsilon_greedy(q, state, epsilon, load_stream(rng))
    store_stream(rng, stream)
    return action


@njit(cache=True, inline="always")
def bootstrap_value(q: np.ndarray, state: int, algorithm: int, epsilon: float, next_action: int) -> float:
    """The value of ``state`` in the TD target: Q(s', a') (SARSA), max Q(s', ·) (Q-learning), or
    E_{a'~ε-greedy} Q(s', a') (expected SARSA; greedy ties share 1-ε, so it is (1-ε)·max + ε·mean)."""
    if algorithm == SARSA:
        return q[state, next_action]
    maximum, total = q[state, 0], 0.0
    for a in range(q.shape[1]):
        maximum = max(maximum, q[state, a])
        total += q[state, a]
    if algorithm == QLEARNING:
        return maximum
    return (1.0 - epsilon) * maximum + epsilon * total / q.shape[1]


@njit(cache=True, inline="always")
def td_update(q: np.ndarray, state: int, action: int, reward: float, next_state: int, terminated: bool,
              learning_rate: float, gamma: float, algorithm: int, epsilon: float, next_action: int) -> float:
    """Q(s,a) += α (r + γ·[not terminated]·bootstrap(s') − Q(s,a)); returns the TD error.

    Only a true terminal cuts the bootstrap: after a time-limit truncation s' is an ordinary state.
    """
    target = reward
    if not terminated:
        target += gamma * bootstrap_value(q, next_state, algorithm, epsilon, next_action)
    error = target - q[state, action]
    q[state, action] += learning_rate * error
    return error


@njit(cache=True)
def interpolate(knots: np.ndarray, progress: float) -> float:
    """A schedule tabulated at evenly spaced progress points, read off by linear interpolation."""
    position = min(max(progress, 0.0), 1.0) * (knots.shape[0] - 1)
    index = min(int(position), knots.shape[0] - 2)
    fraction = position - index
    return knots[index] + fraction * (knots[index + 1] - knots[index])


@njit(cache=True, inline="always")
def sample_index(cumulative: np.ndarray, count: int, stream: tuple) -> tuple:
    """(i, stream) with i < count drawn with probability cumulative[i] - cumulative[i-1]."""
    u, stream = next_uniform(stream)
    index = 0
    while index < count - 1 and u >= cumulative[index]:
        index += 1
    return index, stream


@njit(cache=True)
def sample_indices(cumulative: np.ndarray, count: int, n: int, rng: np.ndarray) -> np.ndarray:
    """``n`` draws of ``sample_index`` from the array-held stream ``rng`` (for checks and tests)."""
    indices, stream = np.empty(n, dtype=np.int64), load_stream(rng)
    for i in range(n):
        indices[i], stream = sample_index(cumulative, count, stream)
    store_stream(rng, stream)
    return indices


@njit(cache=True)
def run_episodes(q, cumulative, outcome_counts, next_states, rewards, terminated, initial_cumulative,
                 algorithm, gamma, epsilon_knots, learning_rate_knots, first_episode, n_episodes,
                 total_episodes, horizon, rng, returns, lengths):
    """Train on ``n_episodes`` episodes sampled from the transition table; returns the update count.

    Table arrays are [S, A, K] (K = most outcomes of any (s, a)); ``horizon`` 0 means no time limit.
    ``returns``/``lengths`` [n_episodes] receive each episode's undiscounted return and length.
    """
    updates, stream = 0, load_stream(rng)
    n_initial = initial_cumulative.shape[0]
    for episode in range(n_episodes):
        progress = (first_episode + episode) / total_episodes
        epsilon = interpolate(epsilon_knots, progress)
        learning_rate = interpolate(learning_rate_knots, progress)
        state, stream = sample_index(initial_cumulative, n_initial, stream)
        action, stream = epsilon_greedy(q, state, epsilon, stream)
        total, steps = 0.0, 0
        while True:
            k, stream = sample_index(cumulative[state, action], outcome_counts[state, action], stream)
            next_state = next_states[state, action, k]
            reward = rewards[state, action, k]
            done = terminated[state, action, k]
            steps += 1
            next_action = 0
            if algorithm == SARSA and not done:
                next_action, stream = epsilon_greedy(q, next_state, epsilon, stream)
            td_update(q, state, action, reward, next_state, done, learning_rate, gamma, algorithm,
                      epsilon, next_action)
            total += reward
            updates += 1
            if done or steps == horizon:
                break
            if algorithm != SARSA:
                next_action, stream = epsilon_greedy(q, next_state, epsilon, stream)
            state, action = next_state, next_action
        returns[episode] = total
        lengths[episode] = steps
    store_stream(rng, stream)
    return updates


@njit(cache=True)
def rollout_policy(policy, cumulative, outcome_counts, next_states, rewards, terminated,
                   initial_cumulative, horizon, n_episodes, rng, returns):
    """Sampled returns of a deterministic policy [S] on the table (the fast sampled evaluation)."""
    n_initial, stream = initial_cumulative.shape[0], load_stream(rng)
    for episode in range(n_episodes):
        state, stream = sample_index(initial_cumulative, n_initial, stream)
        total, steps = 0.0, 0
        while True:
            action = policy[state]
            k, stream = sample_index(cumulative[state, action], outcome_counts[state, action], stream)
            total += rewards[state, action, k]
            steps += 1
            if terminated[state, action, k] or steps == horizon:
                break
            state = next_states[state, action, k]
        returns[episode] = total
    store_stream(rng, stream)
