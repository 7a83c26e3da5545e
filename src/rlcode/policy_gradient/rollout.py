"""Collecting ``[batch, time]`` rollouts from a NEXT_STEP-autoreset vector env (see envs.py).

Per step the loop samples actions from the policy (``ActorCritic.act``, from the run's torch
generator) and writes into preallocated numpy arrays; log-probabilities and values of the whole
rollout are then computed in one batched forward (``with_policy_outputs``), which is both faster and
exactly what the update sees (so PPO's first ratio is 1). The fast path's collector (fast/) only
replaces ``sampler``: the same policy in numpy, its noise drawn up front.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlcode.advantages import gae
from rlcode.batch import TensorBatch
from rlcode.losses import explained_variance
from rlcode.policy_gradient.actor_critic import ActorCritic
from rlcode.policy_gradient.normalize import Normalizer


class RolloutCollector:
    """Holds what carries over between rollouts: the current observations and episode counters."""

    def __init__(
        self, env: Any, policy: ActorCritic, normalizer: Normalizer, generator: torch.Generator
    ) -> None:
        self.env, self.policy, self.normalizer, self.generator = env, policy, normalizer, generator
        self.num_envs = env.num_envs
        space = env.single_action_space
        self.continuous = policy.continuous
        self.action_shape = tuple(space.shape) if self.continuous else ()
        self.action_size = int(space.shape[0]) if self.continuous else int(space.n)
        self.action_low = getattr(space, "low", None)
        self.action_high = getattr(space, "high", None)
        self.observation: np.ndarray | None = None  # [B, obs], normalised, float32
        self.autoreset = np.zeros(self.num_envs, dtype=bool)  # next step of env i is its reset step
        self.episode_return = np.zeros(self.num_envs, dtype=np.float64)
        self.episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self.finished: list[tuple[float, int]] = []  # (return, length) of episodes ended since last drain

    def reset(self, seed: int) -> None:
        observation, _ = self.env.reset(seed=seed)
        self.observation = self._arrive(observation)

    def _arrive(self, observation: np.ndarray) -> np.ndarray:
        return self.normalizer.observation(np.asarray(observation, dtype=np.float32))

    def collect(self, num_steps: int) -> tuple[TensorBatch, torch.Tensor]:
        """Step every env ``num_steps`` times; returns the rollout and the observations after it [B, obs]."""
        B, T = self.num_envs, num_steps
        assert self.observation is not None, "call reset() or load a checkpoint before collect()"
        observations = np.empty((B, T, *self.observation.shape[1:]), dtype=np.float32)
        actions = np.empty((B, T, *self.action_shape), dtype=np.float32 if self.continuous else np.int64)
        rewards = np.empty((B, T), dtype=np.float32)
        terminated = np.empty((B, T), dtype=np.float32)
        truncated = np.empty((B, T), dtype=np.float32)
        mask = np.empty((B, T), dtype=np.float32)
        observation = self.observation
        env, normalizer = self.env, self.normalizer
        sample = self.sampler(T)
        mask[:, 0] = ~self.autoreset
        for t in range(T):
            observations[:, t] = observation
            action = sample(observation, t)
            actions[:, t] = action
            if self.continuous:  # the env gets the action clipped to its bounds; the update the sampled one
                action = np.clip(action, self.action_low, self.action_high)
            next_observation, reward, terms, truncs, _ = env.step(action)
            done = terms | truncs
            self._count_episodes(reward, done)
            rewards[:, t] = normalizer.reward(reward, done)
            terminated[:, t], truncated[:, t] = terms, truncs
            self.autoreset = done
            observation = self._arrive(next_observation)
        mask[:, 1:] = 1.0 - np.maximum(terminated[:, :-1], truncated[:, :-1])  # 0 after an episode end
        self.observation = observation
        batch = TensorBatch(
            observations=torch.from_numpy(observations),  # [B, T, obs]
            actions=torch.from_numpy(actions),  # [B, T] or [B, T, A]
            rewards=torch.from_numpy(rewards),  # [B, T]
            terminated=torch.from_numpy(terminated),  # [B, T]
            truncated=torch.from_numpy(truncated),  # [B, T]
            mask=torch.from_numpy(mask),  # [B, T]: 0 on the reset step that follows an episode end
        )
        return batch, torch.from_numpy(observation.copy())

    def sampler(self, num_steps: int) -> Callable[[np.ndarray, int], np.ndarray]:
        """``sample(observations [B, obs], t) -> actions [B] or [B, A]``, drawn from π(·|s) for one rollout."""
        policy, generator = self.policy, self.generator

        def sample(observation: np.ndarray, t: int) -> np.ndarray:
            with torch.inference_mode():
                return policy.act(torch.from_numpy(observation), generator).numpy()

        return sample

    def _count_episodes(self, reward: np.ndarray, done: np.ndarray) -> None:
        self.episode_return += reward
        self.episode_length += ~self.autoreset
        if done.any():
            for i in np.flatnonzero(done):
                self.finished.append((float(self.episode_return[i]), int(self.episode_length[i])))
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0

    def drain_episodes(self) -> list[tuple[float, int]]:
        finished, self.finished = self.finished, []
        return finished

    def state(self) -> dict[str, Any]:
        assert self.observation is not None
        return {
            "observation": self.observation.tolist(),
            "autoreset": self.autoreset.tolist(),
            "episode_return": self.episode_return.tolist(),
            "episode_length": self.episode_length.tolist(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.observation = np.asarray(state["observation"], dtype=np.float32)
        self.autoreset = np.asarray(state["autoreset"], dtype=bool)
        self.episode_return = np.asarray(state["episode_return"], dtype=np.float64)
        self.episode_length = np.asarray(state["episode_length"], dtype=np.int64)


def with_policy_outputs(policy: ActorCritic, batch: TensorBatch, last_observations: torch.Tensor) -> TensorBatch:
    """Add old_log_probs, values, next_values and continues to a rollout, in one batched forward.

    next_values[:, t] is V(s_{t+1}): under NEXT_STEP autoreset the observation stored at t+1 is the
    real final observation when an episode ended at t, so a truncated episode bootstraps from it; a
    terminated one gets 0. continues[:, t] is 0 where an episode ended at t.
    """
    with torch.no_grad():
        observations, actions = batch.observations.flatten(0, 1), batch.actions.flatten(0, 1)  # [B*T, ...]
        log_probs, entropy, values = policy.evaluate(observations, actions)
        assert entropy is not None
        return with_outputs(batch, log_probs, entropy, values, policy.value(last_observations))


def with_outputs(batch: TensorBatch, old_log_probs: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor,
                 last_values: torch.Tensor) -> TensorBatch:
    """``with_policy_outputs`` from the policy's outputs on the rollout's rows [B*T] and V(last) [B]."""
    B, T = batch.rewards.shape
    values = values.view(B, T)
    batch["entropy"] = entropy.view(B, T)
    following = torch.cat([values[:, 1:], last_values.unsqueeze(1)], dim=1)  # [B, T]
    batch["old_log_probs"] = old_log_probs.view(B, T)
    batch["values"] = values
    batch["next_values"] = following * (1.0 - batch.terminated)
    batch["continues"] = 1.0 - torch.maximum(batch.terminated, batch.truncated)
    return batch


def mean_entropy(batch: TensorBatch) -> float:
    """The policy's mean entropy over a rollout's valid steps (``with_policy_outputs`` adds it)."""
    return float((batch.entropy * batch.mask).sum() / batch.mask.sum().clamp(min=1))


def rollout_statistics(batch: TensorBatch) -> dict[str, float]:
    """What train() logs about a prepared rollout beside the update's own statistics: the policy's
    mean entropy, and how much of the returns' variance the critic explains (SB3's
    ``explained_variance`` of the rollout's values against its returns; nan below two valid steps)."""
    stats = {"loss/entropy": mean_entropy(batch)}
    if "returns" in batch and "values" in batch:
        enough = float(batch.mask.sum()) >= 2
        stats["value/explained_variance"] = (
            explained_variance(batch["values"], batch["returns"], batch.mask) if enough else float("nan"))
    return stats


def valid_rows(batch: TensorBatch, keys: tuple[str, ...]) -> TensorBatch:
    """``keys`` of a [B, T] batch flattened to [N, ...], keeping only rows with mask 1.

    Dropping the autoreset steps (and, for REINFORCE, steps without a return) once here lets every
    loss be a plain mean, as in SB3, instead of a masked one on every minibatch.
    """
    flat = TensorBatch({key: batch[key] for key in keys}).flatten()  # [B*T, ...]
    mask = batch.mask.flatten()
    if bool(mask.all()):
        return flat
    return flat[mask.nonzero().squeeze(1)]


def with_gae(batch: TensorBatch, gamma: float, gae_lambda: float) -> TensorBatch:
    """Add GAE advantages and returns (λ = gae_lambda; 1 gives n-step returns) to a rollout from
    ``with_policy_outputs``; A2C and PPO both prepare their batches this way."""
    advantages, returns = gae(batch.rewards, batch["values"], batch.next_values, batch.continues, gamma, gae_lambda)
    batch["advantages"], batch["returns"] = advantages, returns  # [B, T]
    return batch
