"""Update functions: PPO's first ratio is 1 (to float rounding), target-KL stops early, value clipping, REINFORCE masks."""

from __future__ import annotations

import torch

from rlcode.policy_gradient import ppo, reinforce
from rlcode.policy_gradient.config import PPOConfig, ReinforceConfig
from rlcode.policy_gradient.envs import make_vector_env
from rlcode.policy_gradient.normalize import Normalizer
from rlcode.policy_gradient.optim import make_optimizer
from rlcode.policy_gradient.rollout import RolloutCollector, with_policy_outputs
from rlcode.policy_gradient.train import build_policy


def _rollout(config, steps: int):
    torch.manual_seed(0)
    env = make_vector_env(config.env_id, config.num_envs)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    collector = RolloutCollector(env, policy, Normalizer((4,), config.num_envs, 0.99, False, False),
                                 torch.Generator().manual_seed(0))
    collector.reset(seed=0)
    batch, last = collector.collect(steps)
    optimizer = make_optimizer(list(policy.parameters()), "adam", 1e-3, 1e-5)
    return policy, optimizer, with_policy_outputs(policy, batch, last)


def test_ppo_first_step_has_ratio_one_and_target_kl_stops_early():
    config = PPOConfig(num_envs=4, num_steps=32, minibatch_size=128, num_epochs=1)
    policy, optimizer, batch = _rollout(config, 32)
    stats = ppo.update(policy, optimizer, ppo.prepare(batch, config), config)
    # The rollout's log-probs come from one stacked forward over the rollout plus the last observations
    # (132 rows) and the update's from the 128-row minibatch: a BLAS may sum each row in another order
    # for another row count, so the ratios are 1 to float rounding (approx_kl ~ ulp^2), not bit for bit.
    assert 0.0 <= stats["policy/approx_kl"] < 1e-10 and stats["policy/clip_fraction"] == 0.0
    strict = PPOConfig(num_envs=4, num_steps=32, minibatch_size=32, num_epochs=10, target_kl=1e-12,
                       learning_rate=1e-2, value_clip_range=0.2)
    policy, optimizer, batch = _rollout(strict, 32)
    stats = ppo.update(policy, optimizer, ppo.prepare(batch, strict), strict, generator=torch.Generator())
    assert stats["update/early_stop"] == 1.0
    assert "value/clip_fraction" in stats


def test_reinforce_drops_steps_whose_episode_has_not_ended():
    config = ReinforceConfig(num_envs=2, num_steps=64, total_timesteps=128)
    _, _, batch = _rollout(config, 64)
    autoreset_mask = batch.mask.clone()
    prepared = reinforce.prepare(batch, config)
    ended = 1.0 - prepared.continues
    for row in range(2):
        last_end = int(ended[row].nonzero().max()) if ended[row].any() else -1
        assert prepared.mask[row, last_end + 1:].sum() == 0  # the unfinished tail has no return
        assert (prepared.mask[row, : last_end + 1] == autoreset_mask[row, : last_end + 1]).all()
