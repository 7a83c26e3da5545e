"""A2C (Mnih et al. 2016, synchronous form): n-step returns from a critic, one step per rollout.

With gae_lambda = 1 the advantages are the n-step returns R_t = Σ γ^k r_{t+k} + γ^n V(s_{t+n})
minus V(s_t), bootstrapping at the rollout's end and at truncations (SB3's A2C does the same).
The step below is the reference (autograd, torch.optim); train.py may run the same step on the fast
engine instead (fast/fused_numpy.py, ``A2CConfig.fused_update``, on by default; tests hold the two together).
"""

from __future__ import annotations

from typing import Any

from rlcode.batch import TensorBatch
from rlcode.losses import policy_gradient_loss
from rlcode.masked import masked_whiten
from rlcode.policy_gradient.actor_critic import ActorCritic
from rlcode.policy_gradient.config import A2CConfig
from rlcode.policy_gradient.optim import gradient_step
from rlcode.policy_gradient.rollout import valid_rows, with_gae

_KEYS = ("observations", "actions", "advantages", "returns")


def prepare(batch: TensorBatch, config: A2CConfig) -> TensorBatch:
    """Add advantages and returns (GAE, λ = gae_lambda) to a rollout from ``with_policy_outputs``."""
    return with_gae(batch, config.gamma, config.gae_lambda)


def update(policy: ActorCritic, optimizer: Any, batch: TensorBatch, config: A2CConfig) -> dict[str, float]:
    """Actor loss −log π(a|s)·A, critic loss E[(V − R)²], entropy bonus; one gradient step."""
    flat = valid_rows(batch, _KEYS)  # [N, ...]
    if len(flat.returns) == 0:  # every step was an autoreset step: nothing to learn from
        return {"loss/policy": 0.0, "loss/value": 0.0, "optim/grad_norm": 0.0}
    log_probs, entropy, values = policy.evaluate(flat.observations, flat.actions, config.entropy_coef > 0)
    advantages = flat.advantages
    if config.normalize_advantages and len(advantages) > 1:
        advantages = masked_whiten(advantages)
    policy_loss = policy_gradient_loss(log_probs, advantages)
    value_mse = (values - flat.returns).pow(2).mean()
    loss = policy_loss + config.value_coef * value_mse
    if entropy is not None:
        loss = loss - config.entropy_coef * entropy.mean()
    grad_norm = gradient_step(list(policy.parameters()), optimizer, loss, config.max_grad_norm)
    return {"loss/policy": policy_loss.item(), "loss/value": value_mse.item(), "optim/grad_norm": grad_norm.item()}
