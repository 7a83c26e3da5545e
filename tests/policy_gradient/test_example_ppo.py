"""examples/ppo_cartpole.py, the PPO update written out top to bottom, makes ppo.update's update."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from rlcode.policy_gradient import ppo
from rlcode.policy_gradient.actor_critic import ActorCritic
from rlcode.policy_gradient.config import PPOConfig
from rlcode.policy_gradient.envs import make_vector_env
from rlcode.policy_gradient.normalize import Normalizer
from rlcode.policy_gradient.rollout import RolloutCollector, with_policy_outputs

EXAMPLE = Path(__file__).parents[2] / "examples" / "ppo_cartpole.py"


def _example():
    spec = importlib.util.spec_from_file_location("ppo_cartpole_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("minibatch_size", [128, 32], ids=["one-minibatch", "shuffled-minibatches"])
def test_example_update_equals_ppo_update(minibatch_size):
    config = PPOConfig(num_envs=4, num_steps=32, minibatch_size=minibatch_size, num_epochs=3, entropy_coef=0.01,
                       fused_update=False)
    torch.manual_seed(0)
    policy = ActorCritic(4, 2, continuous=False, hidden_sizes=config.hidden_sizes)
    env = make_vector_env(config.env_id, config.num_envs, "sync")
    collector = RolloutCollector(env, policy, Normalizer((4,), config.num_envs, config.gamma, False, False),
                                 torch.Generator().manual_seed(0))
    collector.reset(seed=0)
    rollout, last = collector.collect(config.num_steps)
    env.close()
    assert float(rollout.mask.min()) == 0.0  # episodes ended: autoreset rows are dropped by both
    results = []
    for run_update in (_example().update, None):
        model = copy.deepcopy(policy)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=config.optimizer_eps)
        generator = torch.Generator().manual_seed(7)
        if run_update is not None:
            run_update(model, optimizer, copy.copy(rollout), last, config, 0.2, generator)
        else:
            batch = ppo.prepare(with_policy_outputs(model, copy.copy(rollout), last), config)
            ppo.update(model, optimizer, batch, config, clip_range=0.2, generator=generator)
        results.append(model)
    for a, b in zip(results[0].parameters(), results[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(results[0].parameters(), policy.parameters()))
