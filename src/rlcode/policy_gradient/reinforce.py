"""REINFORCE (Williams 1992): ascend E[log π(a|s)·(G − b(s))] with Monte-Carlo returns G.

A rollout is cut after num_steps, so a step whose episode has not ended by then has no Monte-Carlo
return yet; such steps are masked out (the episode's later steps are used in the next rollout, where
it ends). Without a baseline a time-limit truncation is treated as the episode's end, the only
choice without a critic; with the learned baseline the return bootstraps from V(final observation).
"""

from __future__ import annotations

from typing import Any

import torch

from rlcode.advantages import discounted_returns
from rlcode.batch import TensorBatch
from rlcode.losses import policy_gradient_loss
from rlcode.masked import masked_whiten
from rlcode.policy_gradient.actor_critic import ActorCritic
from rlcode.policy_gradient.config import ReinforceConfig
from rlcode.policy_gradient.optim import gradient_step
from rlcode.policy_gradient.rollout import valid_rows

_KEYS = ("observations", "actions", "advantages", "returns")


def prepare(batch: TensorBatch, config: ReinforceConfig) -> TensorBatch:
    """Add returns, advantages and the Monte-Carlo mask to a rollout from ``with_policy_outputs``."""
    ended = 1.0 - batch.continues  # [B, T]
    ends_later = ended.flip(1).cummax(dim=1).values.flip(1)  # 1 where the episode ends at t or later
    bootstrap = batch.next_values if config.use_baseline else None
    returns = discounted_returns(batch.rewards, batch.continues, config.gamma, bootstrap)  # [B, T]
    batch["returns"] = returns
    batch["advantages"] = returns - batch["values"] if config.use_baseline else returns
    batch["mask"] = batch.mask * ends_later
    return batch


def update(
    policy: ActorCritic, optimizer: Any, batch: TensorBatch, config: ReinforceConfig
) -> dict[str, float]:
    """One gradient step on every step of the rollout that has a return; returns loss statistics."""
    used = float(batch.mask.mean())
    flat = valid_rows(batch, _KEYS)  # [N, ...]
    if flat.size < 2:
        return {"update/skipped": 1.0, "update/used_fraction": used}
    with_entropy = config.entropy_coef > 0
    log_probs, entropy, values = policy.evaluate(flat.observations, flat.actions, with_entropy)
    advantages = flat.advantages
    if config.normalize_advantages:
        advantages = masked_whiten(advantages)
    policy_loss = policy_gradient_loss(log_probs, advantages)
    loss = policy_loss
    if entropy is not None:
        loss = loss - config.entropy_coef * entropy.mean()
    value_mse = torch.zeros(())
    if config.use_baseline:
        value_mse = (values - flat.returns).pow(2).mean()
        loss = loss + config.value_coef * value_mse
    grad_norm = gradient_step(list(policy.parameters()), optimizer, loss, config.max_grad_norm)
    return {
        "loss/policy": policy_loss.item(),
        "loss/value": value_mse.item(),
        "optim/grad_norm": grad_norm.item(),
        "update/used_fraction": used,
    }
