"""PPO on CartPole in one read: rollout -> GAE -> minibatches -> losses -> torch.optim, top to bottom.

The same update as ``rlcode.policy_gradient.ppo.update`` (tests/policy_gradient/test_example_ppo.py
checks it), written out with rlcode's pieces like CleanRL's ppo.py; ``rlcode train ppo`` adds
checkpoints, evaluation, logging and the fast engine. Run: python examples/ppo_cartpole.py
"""

import torch

from rlcode.advantages import gae
from rlcode.losses import clipped_surrogate_loss, value_loss
from rlcode.masked import masked_whiten
from rlcode.policy_gradient.actor_critic import ActorCritic
from rlcode.policy_gradient.config import PPOConfig
from rlcode.policy_gradient.envs import make_vector_env
from rlcode.policy_gradient.normalize import Normalizer
from rlcode.policy_gradient.rollout import RolloutCollector


def update(policy, optimizer, rollout, last_observations, config, clip, generator):
    B, T = rollout.rewards.shape  # every tensor of the rollout is [B envs, T steps, ...]
    with torch.no_grad():  # log π_old(a|s), V(s_t), and V(s_{t+1}) to bootstrap from (0 after a termination)
        old_log_probs, _, values = policy.evaluate(rollout.observations.flatten(0, 1), rollout.actions.flatten(0, 1))
        values = values.view(B, T)
        next_values = torch.cat([values[:, 1:], policy.value(last_observations)[:, None]], 1) * (1 - rollout.terminated)
    continues = 1 - torch.maximum(rollout.terminated, rollout.truncated)  # 0 where an episode ended
    advantages, returns = gae(rollout.rewards, values, next_values, continues, config.gamma, config.gae_lambda)
    keep = rollout.mask.flatten().bool()  # drop the autoreset steps (the step after an episode's end)
    observations, actions = rollout.observations.flatten(0, 1)[keep], rollout.actions.flatten(0, 1)[keep]
    old_log_probs, advantages, returns = old_log_probs[keep], advantages.flatten()[keep], returns.flatten()[keep]
    count = max(1, round(len(returns) / config.minibatch_size))  # minibatches per epoch
    for _ in range(config.num_epochs):
        order = torch.randperm(len(returns), generator=generator) if count > 1 else torch.arange(len(returns))
        for rows in order.tensor_split(count):
            log_probs, entropy, new_values = policy.evaluate(observations[rows], actions[rows])
            advantage = masked_whiten(advantages[rows]) if config.normalize_advantages else advantages[rows]
            policy_loss, _ = clipped_surrogate_loss(log_probs, old_log_probs[rows], advantage, clip)
            half_mse, _ = value_loss(new_values, returns[rows])  # ½E[(V − R)²]
            loss = policy_loss + config.value_coef * 2 * half_mse - config.entropy_coef * entropy.mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()


def main(config: PPOConfig) -> None:
    torch.manual_seed(config.seed)
    env = make_vector_env(config.env_id, config.num_envs, "sync")
    policy = ActorCritic(4, 2, continuous=False, hidden_sizes=config.hidden_sizes)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate, eps=config.optimizer_eps)
    generator = torch.Generator().manual_seed(config.seed)  # action sampling and minibatch order
    collector = RolloutCollector(env, policy, Normalizer((4,), config.num_envs, config.gamma, False, False), generator)
    collector.reset(seed=config.seed)
    for step in range(config.rollout_size, config.total_timesteps + 1, config.rollout_size):
        rollout, last_observations = collector.collect(config.num_steps)
        progress_remaining = 1 - step / config.total_timesteps  # linear schedules, as the zoo's
        optimizer.param_groups[0]["lr"] = config.learning_rate * progress_remaining
        update(policy, optimizer, rollout, last_observations, config, config.clip_range * progress_remaining, generator)
        returns = [episode_return for episode_return, _ in collector.drain_episodes()]
        if returns and step % 10_240 == 0:
            print(f"step {step:6d}: mean episode return {sum(returns) / len(returns):.1f}")


if __name__ == "__main__":
    main(PPOConfig())  # the zoo's CartPole-v1 hyperparameters
