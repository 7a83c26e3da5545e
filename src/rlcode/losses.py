"""Policy-gradient and PPO losses shared by REINFORCE, A2C, PPO and the RLHF trainer.

All take an optional ``mask`` (1 where a position counts) so the same code serves env rollouts
(no mask) and padded token sequences.
"""

from __future__ import annotations

import torch

from rlcode.masked import masked_mean


def policy_gradient_loss(
    log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """−E[log π(a|s)·A] (Williams 1992); ``advantages`` is a return, or a return minus a baseline."""
    return -masked_mean(log_probs * advantages.detach(), mask)


def clipped_surrogate_terms(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (−A·r, −A·clip(r, 1 − ε, 1 + ε)): PPO's loss is their maximum (Schulman et al. 2017, eq. 7).
    ``clipped_surrogate_loss`` averages it; the RLHF tier sums it over the global minibatch's tokens."""
    return -advantages * ratio, -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)


def clipped_value_terms(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ((V − R)², (clip(V, V_old − ε, V_old + ε) − R)²): the loss is ½ their maximum, in TRL 0.11's
    form (``clip_by_value``), which the RLHF tier keeps for parity. ``value_loss`` below writes the clip as
    SB3 does, V_old + clip(V − V_old, ±ε): the same number up to the last bit, and the fused engine's
    closed-form gradient and its tie-counting test follow that form."""
    values_clipped = torch.clamp(values, old_values - clip_range, old_values + clip_range)
    return (values - returns) ** 2, (values_clipped - returns) ** 2


def clipped_surrogate_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped objective (Schulman et al. 2017, eq. 7), negated as a loss.

    Returns the loss and detached diagnostics: ratio, clip_fraction, and three estimates of
    KL(old‖new) from r = π/π_old: approx_kl = E[(r − 1) − log r] (k3; SB3's and CleanRL's approx_kl,
    and what target_kl early stopping reads), approx_kl_k2 = ½·E[(log r)²] (TRL's approxkl) and
    policy_kl = E[−log r] (k1).
    """
    log_ratio = log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    unclipped, clipped = clipped_surrogate_terms(ratio, advantages, clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "ratio": ratio,
            "clip_fraction": masked_mean(torch.gt(clipped, unclipped).float(), mask),
            "approx_kl": approx_kl(log_probs, old_log_probs, mask),
            "approx_kl_k2": 0.5 * masked_mean(log_ratio**2, mask),
            "policy_kl": masked_mean(-log_ratio, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_range: float | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """½·E[(V − R)²], optionally with PPO's value clipping around ``old_values``.

    Returns (loss, clip_fraction); clip_fraction is 0 without clipping.
    """
    squared = (values - returns) ** 2
    if clip_range is None or old_values is None:
        return 0.5 * masked_mean(squared, mask), torch.zeros((), dtype=values.dtype)
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    clipped_squared = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(squared, clipped_squared), mask)
    clip_fraction = masked_mean(torch.gt(clipped_squared, squared).float(), mask).detach()
    return loss, clip_fraction


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) along the last dimension: logsumexp(z) − Σ softmax(z)·z."""
    probabilities = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probabilities * logits).sum(dim=-1)


def approx_kl(log_probs: torch.Tensor, old_log_probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Unbiased low-variance KL(old‖new) estimator E[(r − 1) − log r] (Schulman's k3)."""
    log_ratio = log_probs - old_log_probs
    return masked_mean(torch.expm1(log_ratio) - log_ratio, mask)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """1 − Var[target − predicted] / Var[target]; nan when the target is constant."""
    from rlcode.masked import masked_var

    target_variance = masked_var(target, mask)
    if float(target_variance) == 0.0:
        return float("nan")
    return float(1.0 - masked_var(target - predicted, mask) / target_variance)
