"""PPO (Schulman et al. 2017): clipped surrogate over epochs of shuffled minibatches, with GAE.

The reference: autograd, torch.optim, clip_grad_norm_. train.py may run the same update on the fast
engine instead (fast/, ``PPOConfig.fused_update``, on by default); tests hold the two together.

Matches SB3's PPO where it matters for comparison: advantages whitened per minibatch, critic loss
E[(V − R)²] weighted by value_coef, early stop when the k3 KL estimate exceeds 1.5·target_kl.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from rlcode.batch import TensorBatch
from rlcode.losses import clipped_surrogate_loss, value_loss
from rlcode.masked import masked_whiten
from rlcode.policy_gradient.actor_critic import ActorCritic
from rlcode.policy_gradient.config import PPOConfig
from rlcode.policy_gradient.optim import gradient_step
from rlcode.policy_gradient.rollout import valid_rows, with_gae

KEYS = ("observations", "actions", "old_log_probs", "values", "advantages", "returns")


def prepare(batch: TensorBatch, config: PPOConfig) -> TensorBatch:
    """Add advantages and returns (GAE, λ = gae_lambda) to a rollout from ``with_policy_outputs``."""
    return with_gae(batch, config.gamma, config.gae_lambda)


def update(
    policy: ActorCritic,
    optimizer: Any,
    batch: TensorBatch,
    config: PPOConfig,
    clip_range: float | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """num_epochs passes of minibatch steps; ``clip_range`` overrides config.clip_range (schedules)."""
    clip = config.clip_range if clip_range is None else clip_range
    flat = valid_rows(batch, KEYS)  # [N, ...], N <= B*T: autoreset steps dropped
    parameters = list(policy.parameters())
    history: list[dict[str, torch.Tensor]] = []
    stopped_early = False
    for minibatch in minibatches(flat, config, generator):
        log_probs, entropy, values = policy.evaluate(minibatch.observations, minibatch.actions, config.entropy_coef > 0)
        advantages = minibatch.advantages
        if config.normalize_advantages and len(advantages) > 1:
            advantages = masked_whiten(advantages)
        policy_loss, surrogate = clipped_surrogate_loss(log_probs, minibatch.old_log_probs, advantages, clip)
        if config.target_kl is not None and float(surrogate["approx_kl"]) > 1.5 * config.target_kl:
            stopped_early = True  # SB3's rule: k3 KL before this step's update
            break
        half_mse, value_clip_fraction = value_loss(values, minibatch.returns, minibatch["values"], config.value_clip_range)
        # value_coef weights E[(V − R)²] as SB3's vf_coef does; losses.value_loss is ½E[(V − R)²]
        loss = policy_loss + config.value_coef * 2.0 * half_mse
        if entropy is not None:
            loss = loss - config.entropy_coef * entropy.mean()
        grad_norm = gradient_step(parameters, optimizer, loss, config.max_grad_norm)
        history.append({
            "loss/policy": policy_loss.detach(),
            "loss/value": 2.0 * half_mse.detach(),
            "policy/approx_kl": surrogate["approx_kl"],
            "policy/approx_kl_k2": surrogate["approx_kl_k2"],
            "policy/clip_fraction": surrogate["clip_fraction"],
            "value/clip_fraction": value_clip_fraction,
            "optim/grad_norm": grad_norm,
        })
    result = {key: float(torch.stack([step[key] for step in history]).mean()) for key in (history[:1] or [{}])[0]}
    result["update/early_stop"] = float(stopped_early)
    result["policy/clip_range"] = clip
    return result


def minibatches(flat: TensorBatch, config: PPOConfig, generator: torch.Generator | None) -> Iterator[TensorBatch]:
    """num_epochs passes of shuffled minibatches, drawn lazily (an early stop draws no further permutations)."""
    # minibatch_size divides B*T; with a few rows dropped, split into as many near-equal minibatches
    count = max(1, round(flat.size / config.minibatch_size))
    for _ in range(config.num_epochs):
        if count == 1:  # one minibatch needs no shuffle: the mean over all rows does not depend on order
            yield flat
        else:
            yield from (flat[rows] for rows in torch.randperm(flat.size, generator=generator).tensor_split(count))
