"""Building tabular envs from a config, checking their spaces, and reading their transition table.

``env.unwrapped.P[s][a]`` is gymnasium's toy-text table: a list of (probability, next state, reward,
terminated) tuples. ``TransitionTable`` packs it into padded [S, A, K] arrays that both the numba
training loop and the planner read.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlcode import env_ids
from rlcode.tabular.config import TabularConfig, is_frozen_lake

# gymnasium 1.4 refuses these ids (DeprecatedEnv); we map them to their successors and say so.
RENAMED_ENVS = {"Taxi-v3": "Taxi-v4", "CliffWalking-v0": "CliffWalking-v1"}
NO_LIMIT_CAP = 100_000  # steps after which an episode of an env without TimeLimit is cut, so loops end


def resolve_env_id(env_id: str) -> str:
    """The id gymnasium registers: a ``module:`` prefix imported and dropped, deprecated toy-text ids renamed."""
    env_id = env_ids.resolve_env_id(env_id)
    if env_id in RENAMED_ENVS:
        new_id = RENAMED_ENVS[env_id]
        warnings.warn(f"{env_id} is deprecated in gymnasium 1.x; using its successor {new_id} "
                      f"instead. Pass --env {new_id} to silence this warning.", UserWarning, stacklevel=2)
        return new_id
    return env_id


def make_env(config: TabularConfig, render_mode: str | None = None) -> Any:
    """The gymnasium env described by ``config``; raises ValueError for non-discrete spaces."""
    import gymnasium as gym

    env_id = resolve_env_id(config.env)
    kwargs: dict[str, Any] = {}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if is_frozen_lake(env_id):
        kwargs["is_slippery"] = config.slippery
        if config.map_rows is not None:
            kwargs["desc"] = config.map_rows
        elif env_id.split("/")[-1] == "FrozenLake-v1":
            kwargs["map_name"] = f"{config.map_size}x{config.map_size}"
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as error:
        raise ValueError(f"TabularConfig.env={config.env!r} is not a registered gymnasium env ({error}); "
                         "pass e.g. FrozenLake-v1, Taxi-v4 or CliffWalking-v1.") from None
    if config.max_episode_steps == 0:
        env = gym.make(dataclasses.replace(spec, max_episode_steps=None), **kwargs)
    else:
        env = gym.make(env_id, max_episode_steps=config.max_episode_steps, **kwargs)
    check_discrete(env, config.env)  # the id as written, so the suggested command keeps its module: prefix
    return env


def check_discrete(env: Any, env_id: str) -> None:
    from gymnasium.spaces import Discrete

    for kind, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, Discrete):
            env.close()
            raise ValueError(
                f"{env_id} has a {type(space).__name__} {kind} space ({space}); tabular methods need Discrete "
                f"observation and action spaces. Train it with a policy-gradient algorithm instead: "
                f"`rlcode train ppo --env {env_id}` (or a2c, reinforce)."
            )
        if int(space.start) != 0:
            raise ValueError(f"{env_id} has a Discrete {kind} space starting at {space.start}; tabular "
                             "methods index the Q-table from 0, so wrap the env to shift it.")


def episode_horizon(env: Any) -> int | None:
    """The TimeLimit of ``env`` (steps per episode), or None when it has none."""
    from gymnasium.wrappers import TimeLimit

    while True:
        if isinstance(env, TimeLimit):
            return int(env._max_episode_steps)
        if not hasattr(env, "env"):
            return None
        env = env.env


@dataclass(frozen=True)
class TransitionTable:
    """env.unwrapped.P as padded arrays [S, A, K]; padding has probability 0 and is never sampled."""

    probabilities: np.ndarray  # [S, A, K]
    next_states: np.ndarray  # [S, A, K] int64
    rewards: np.ndarray  # [S, A, K]
    terminated: np.ndarray  # [S, A, K] bool
    outcome_counts: np.ndarray  # [S, A] int64
    initial: np.ndarray  # [S] start-state distribution

    @property
    def n_states(self) -> int:
        return int(self.probabilities.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.probabilities.shape[1])

    @property
    def cumulative(self) -> np.ndarray:
        return np.cumsum(self.probabilities, axis=-1)  # [S, A, K]

    @property
    def expected_rewards(self) -> np.ndarray:
        return (self.probabilities * self.rewards).sum(-1)  # [S, A]

    @property
    def continuing(self) -> np.ndarray:
        """Probability mass that goes on after each outcome (0 where the outcome terminates)."""
        return np.where(self.terminated, 0.0, self.probabilities)  # [S, A, K]


def transition_table(env: Any) -> TransitionTable | None:
    """Read ``env.unwrapped.P`` (None if the env has no table) and the start distribution."""
    unwrapped = env.unwrapped
    table = getattr(unwrapped, "P", None)
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)
    if not isinstance(table, dict) or len(table) != n_states:
        return None
    width = max(len(outcomes) for row in table.values() for outcomes in row.values())
    probabilities = np.zeros((n_states, n_actions, width))
    next_states = np.zeros((n_states, n_actions, width), dtype=np.int64)
    rewards = np.zeros((n_states, n_actions, width))
    terminated = np.zeros((n_states, n_actions, width), dtype=bool)
    counts = np.zeros((n_states, n_actions), dtype=np.int64)
    for state in range(n_states):
        for action in range(n_actions):
            outcomes = table[state][action]
            counts[state, action] = len(outcomes)
            for k, (probability, next_state, reward, done) in enumerate(outcomes):
                probabilities[state, action, k] = probability
                next_states[state, action, k] = int(next_state)
                rewards[state, action, k] = reward
                terminated[state, action, k] = bool(done)
    return TransitionTable(probabilities, next_states, rewards, terminated, counts, _initial(env, n_states))


def _initial(env: Any, n_states: int) -> np.ndarray:
    distribution = getattr(env.unwrapped, "initial_state_distrib", None)
    if distribution is not None and len(distribution) == n_states:
        distribution = np.asarray(distribution, dtype=np.float64)
        return distribution / distribution.sum()
    # No published start distribution: estimate it from seeded resets (exact for deterministic starts).
    warnings.warn(f"{env.spec.id if env.spec else env} has no initial_state_distrib; estimating it from "
                  "1000 seeded resets, so exact values are exact only up to that estimate.", stacklevel=3)
    counts = np.zeros(n_states)
    for seed in range(1000):
        counts[int(env.reset(seed=seed)[0])] += 1
    return counts / counts.sum()
