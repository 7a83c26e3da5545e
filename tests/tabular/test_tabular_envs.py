"""Env construction: FrozenLake variants, renamed ids, time limits, and the non-discrete error."""

from __future__ import annotations

import numpy as np
import pytest

from rlcode.tabular.config import QLearningConfig
from rlcode.tabular.envs import episode_horizon, make_env, transition_table
from rlcode.tabular.train import train


@pytest.mark.parametrize(
    "config, states, horizon",
    [
        (dict(), 16, 100),
        (dict(map_size=8), 64, 100),
        (dict(env="FrozenLake8x8-v1"), 64, 200),
        (dict(map_desc="SFH,FFG"), 6, 100),
        (dict(max_episode_steps=7), 16, 7),
        (dict(max_episode_steps=0), 16, None),
        (dict(env="Taxi-v4"), 500, 200),
        (dict(env="CliffWalking-v1"), 48, None),
    ],
)
def test_env_shapes_and_time_limits(config, states, horizon):
    env = make_env(QLearningConfig(**config))
    assert env.observation_space.n == states
    assert episode_horizon(env) == horizon
    table = transition_table(env)
    assert table.n_states == states
    np.testing.assert_allclose(table.probabilities.sum(-1), 1.0)
    assert table.initial.sum() == pytest.approx(1.0)


def test_slippery_switch():
    slippery = transition_table(make_env(QLearningConfig()))
    solid = transition_table(make_env(QLearningConfig(slippery=False)))
    assert slippery.outcome_counts.max() == 3 and solid.outcome_counts.max() == 1


@pytest.mark.parametrize("old, new", [("Taxi-v3", "Taxi-v4"), ("CliffWalking-v0", "CliffWalking-v1")])
def test_deprecated_ids_map_to_successors_with_a_warning(old, new):
    with pytest.warns(UserWarning, match=f"{old} is deprecated.*{new}"):
        env = make_env(QLearningConfig(env=old))
    assert env.spec.id == new


def test_non_discrete_env_points_to_policy_gradient_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"Box observation space.*rlcode train ppo --env CartPole-v1"):
        train(QLearningConfig(env="CartPole-v1"), run_dir=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_unknown_env_is_a_clear_error():
    with pytest.raises(ValueError, match="not a registered gymnasium env"):
        make_env(QLearningConfig(env="NoSuchEnv-v0"))
