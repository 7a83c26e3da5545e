from __future__ import annotations

import pytest


@pytest.fixture
def frozen_lake():
    """FrozenLake-v1 4x4 slippery with its 100-step TimeLimit, its table and horizon."""
    from rlcode.tabular.config import QLearningConfig
    from rlcode.tabular.envs import episode_horizon, make_env, transition_table

    env = make_env(QLearningConfig())
    yield env, transition_table(env), episode_horizon(env)
    env.close()
