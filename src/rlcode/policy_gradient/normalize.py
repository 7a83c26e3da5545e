"""Running observation and reward normalisation (SB3's VecNormalize semantics), in float64 numpy.

The statistics are part of the agent: checkpoints store them and evaluation uses them frozen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlcode.statistics import RunningMeanStd


class Normalizer:
    """Observation whitening and reward scaling by the std of the running discounted return.

    Disabled parts pass values through unchanged (and cost nothing).
    """

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        num_envs: int,
        gamma: float,
        observations: bool,
        rewards: bool,
        clip: float = 10.0,
        epsilon: float = 1e-8,
    ) -> None:
        self.observations, self.rewards = observations, rewards
        self.gamma, self.clip, self.epsilon = gamma, clip, epsilon
        self.observation_stats = RunningMeanStd(observation_shape)
        self.return_stats = RunningMeanStd(())
        self.discounted_return = np.zeros(num_envs, dtype=np.float64)  # [B]

    def observation(self, observation: np.ndarray, update: bool = True) -> np.ndarray:
        """Whiten and clip; with update=True the statistics first absorb this batch."""
        if not self.observations:
            return observation
        if update:
            self.observation_stats.update(observation)
        stats = self.observation_stats
        normalized = (observation - stats.mean) / np.sqrt(stats.var + self.epsilon)
        return np.clip(normalized, -self.clip, self.clip).astype(np.float32)

    def reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Scale (not shift) rewards by the running std of γ-discounted returns, as VecNormalize does."""
        if not self.rewards:
            return reward
        self.discounted_return = self.discounted_return * self.gamma + reward
        self.return_stats.update(self.discounted_return)
        self.discounted_return[done] = 0.0
        scaled = reward / np.sqrt(self.return_stats.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {
            "observation_stats": self.observation_stats.state(),
            "return_stats": self.return_stats.state(),
            "discounted_return": self.discounted_return.tolist(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.observation_stats.load(state["observation_stats"])
        self.return_stats.load(state["return_stats"])
        self.discounted_return = np.asarray(state["discounted_return"], dtype=np.float64)
