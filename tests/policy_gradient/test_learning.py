"""Learning tests: fixed seeds, small budgets, asserted returns (deterministic evaluation)."""

from __future__ import annotations

import pytest

from rlcode.policy_gradient.config import A2CConfig, PPOConfig, ReinforceConfig
from rlcode.policy_gradient.train import train


def test_ppo_solves_cartpole(tmp_path):
    result = train(PPOConfig(total_timesteps=50_000, seed=0), run_dir=tmp_path, quiet=True)
    assert result["mean_return"] >= 475


def test_a2c_learns_cartpole(tmp_path):
    result = train(A2CConfig(total_timesteps=60_000, seed=0), run_dir=tmp_path, quiet=True)
    assert result["mean_return"] >= 200


def test_reinforce_learns_cartpole(tmp_path):
    result = train(ReinforceConfig(total_timesteps=60_000, seed=0), run_dir=tmp_path, quiet=True)
    assert result["mean_return"] >= 150


@pytest.mark.slow
def test_ppo_solves_pendulum(tmp_path):
    config = PPOConfig(
        env_id="Pendulum-v1", num_envs=8, num_steps=256, minibatch_size=256, num_epochs=10, gamma=0.9,
        gae_lambda=0.95, learning_rate=1e-3, lr_schedule="linear", clip_range=0.2, clip_range_schedule="constant",
        normalize_observations=True, normalize_rewards=True, total_timesteps=150_000, seed=0,
    )
    result = train(config, run_dir=tmp_path, quiet=True)
    assert result["mean_return"] > -300
