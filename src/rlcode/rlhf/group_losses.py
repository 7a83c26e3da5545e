"""The clipped policy loss of the GRPO family (GRPO, Dr. GRPO, DAPO, GSPO), as in TRL 1.16.

Follows ``GRPOTrainer.compute_loss`` of TRL 1.16 for its clipped loss types. Per token,

    loss_t = −min(w·A, clip(w, 1 − ε_low, 1 + ε_high)·A) + β·k3_t,

with A the sequence's advantage and w the importance weight: per token, w_t = exp(log π − log π_old)
(importance_sampling_level="token"), or, for GSPO (Zheng et al. 2025), one weight per sequence,
s = exp(mean_t (log π − log π_old)), shared by its tokens. TRL computes s with the gradient flowing
through the mean and no stop-gradient; the paper's GSPO-token form sg[s]·π_t/sg[π_t] has the same
value and, with per-sequence advantages, the same gradient (tests/rlhf/test_group_losses.py).
k3 = exp(ref − logp) − (ref − logp) − 1 (``kl_estimators``), optionally multiplied by w
(TRL's ``use_bias_correction_kl``; the gradient facts are in ``kl_estimators``' docstring).

The token losses are summed over the response mask and divided by:

| loss_type | normaliser                                                        | TRL 1.16 name |
| --------- | ----------------------------------------------------------------- | ------------- |
| "grpo"    | each sequence's token count, then the mean over sequences         | grpo          |
| "bnpo"    | the number of response tokens in this batch                       | bnpo          |
| "dr_grpo" | B · max_completion_length (Liu et al. 2025)                       | dr_grpo       |
| "dapo"    | ``num_items_in_batch`` (default: this batch's token count)        | dapo (TRL's default) |

TRL's "dapo" normaliser is the generation batch's response tokens summed over all processes, ÷
num_processes × gradient_accumulation_steps ÷ steps_per_generation; in one process with one optimizer
step per generation batch it is this batch's token count, i.e. "bnpo". TRL also divides the other
three by gradient_accumulation_steps; the loss here is per batch, so the caller does that.

``rloo_policy_loss`` is TRL 1.16's ``RLOOTrainer.compute_loss``: one weight per sequence from the
*summed* log-ratio (the ratio of sequence probabilities, not GSPO's geometric mean), clipped, and
the mean over sequences; its KL penalty lives in the reward (β·Σ_t k1), not in the loss.
"""

from __future__ import annotations

from typing import Literal

import torch

from rlcode.rlhf.kl_estimators import kl_estimate

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
Level = Literal["token", "sequence"]


def group_policy_loss(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
    loss_type: LossType = "dapo", importance_sampling_level: Level = "token",
    epsilon_low: float = 0.2, epsilon_high: float | None = None, delta: float | None = None,
    ref_log_probs: torch.Tensor | None = None, beta: float = 0.0, kl_importance_correction: bool = False,
    max_completion_length: int | None = None, num_items_in_batch: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, stats) from [B, T] per-token log-probs at response positions and [B] advantages.

    epsilon_high None means epsilon_low (DAPO recommends 0.28); delta caps w from above in the
    unclipped term (TRL's two-sided clipping). max_completion_length defaults to T ("dr_grpo" only).
    """
    _check(log_probs, old_log_probs, advantages, mask, loss_type, importance_sampling_level, epsilon_low,
           epsilon_high, delta, ref_log_probs, beta, max_completion_length)
    epsilon_high = epsilon_low if epsilon_high is None else epsilon_high
    mask = mask.to(log_probs.dtype)
    advantages = advantages.unsqueeze(1)                                   # [B, 1]
    log_ratio = log_probs - old_log_probs                                  # [B, T]
    if importance_sampling_level == "sequence":
        log_weights = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)   # [B, 1]
    else:
        log_weights = log_ratio                                            # [B, T]
    weights = torch.exp(log_weights)
    clipped = torch.clamp(weights, 1 - epsilon_low, 1 + epsilon_high)
    unclipped = weights if delta is None else torch.clamp(weights, max=delta)
    token_loss = -torch.min(unclipped * advantages, clipped * advantages)  # [B, T] or [B, 1]
    stats: dict[str, float] = {}
    if beta != 0.0:
        assert ref_log_probs is not None  # _check raised otherwise
        token_kl = kl_estimate(log_probs, ref_log_probs, "k3")             # [B, T]
        if kl_importance_correction:
            token_kl = token_kl * weights
        token_loss = token_loss + beta * token_kl
        stats["kl"] = _masked_mean(token_kl, mask)
    loss = aggregate_token_losses(token_loss, mask, loss_type, max_completion_length, num_items_in_batch)

    # TRL counts clipping on the delta-capped weights (the same counts whenever delta > 1 + epsilon_high)
    low = ((unclipped < 1 - epsilon_low) & (advantages < 0)).to(log_probs.dtype)
    high = ((unclipped > 1 + epsilon_high) & (advantages > 0)).to(log_probs.dtype)
    stats |= {
        "clip_ratio/low_mean": _masked_mean(low, mask), "clip_ratio/high_mean": _masked_mean(high, mask),
        "clip_ratio/region_mean": _masked_mean(torch.maximum(low, high), mask),
        "policy_loss": float(loss.detach()),
    }
    return loss, stats


def rloo_policy_loss(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
    epsilon_low: float = 0.2, epsilon_high: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, stats): −min(w·A, clip(w, 1 − ε_low, 1 + ε_high)·A) averaged over sequences, with
    w = exp(Σ_t mask·(log π − log π_old)) per sequence."""
    _check(log_probs, old_log_probs, advantages, mask, "grpo", "sequence", epsilon_low, epsilon_high, None,
           None, 0.0, None)
    epsilon_high = epsilon_low if epsilon_high is None else epsilon_high
    mask = mask.to(log_probs.dtype)
    weights = torch.exp(((log_probs - old_log_probs) * mask).sum(-1))     # [B]
    clipped = torch.clamp(weights, 1 - epsilon_low, 1 + epsilon_high)
    loss = -torch.min(weights * advantages, clipped * advantages).mean()
    low = ((weights < 1 - epsilon_low) & (advantages < 0)).to(log_probs.dtype)
    high = ((weights > 1 + epsilon_high) & (advantages > 0)).to(log_probs.dtype)
    return loss, {
        "clip_ratio/low_mean": float(low.mean()), "clip_ratio/high_mean": float(high.mean()),
        "clip_ratio/region_mean": float(torch.maximum(low, high).mean()), "policy_loss": float(loss.detach()),
    }


def aggregate_token_losses(token_loss, mask, loss_type, max_completion_length, num_items_in_batch) -> torch.Tensor:
    summed = token_loss * mask                                            # [B, T] (broadcast from [B, 1])
    if loss_type == "grpo":
        return (summed.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return summed.sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        length = mask.shape[1] if max_completion_length is None else max_completion_length
        return summed.sum() / (mask.shape[0] * length)
    count = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch, dtype=mask.dtype)
    return summed.sum() / count.clamp(min=1.0)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """TRL's logged mean: over response tokens for [B, T] values, over sequences for [B, 1] ones."""
    if values.shape[1] == 1:
        return float(values.detach().mean())
    return float((values.detach() * mask).sum() / mask.sum().clamp(min=1.0))


def _check(log_probs, old_log_probs, advantages, mask, loss_type, level, epsilon_low, epsilon_high, delta,
           ref_log_probs, beta, max_completion_length) -> None:
    if log_probs.dim() != 2 or old_log_probs.shape != log_probs.shape or mask.shape != log_probs.shape:
        raise ValueError(
            f"group_policy_loss needs log_probs, old_log_probs and mask of one shape [B, T]; got "
            f"{tuple(log_probs.shape)}, {tuple(old_log_probs.shape)}, {tuple(mask.shape)}."
        )
    if advantages.shape != log_probs.shape[:1]:
        raise ValueError(f"advantages must be [B] = [{log_probs.shape[0]}] (one per sequence), "
                         f"not {tuple(advantages.shape)}.")
    if ((mask != 0) & (mask != 1)).any():
        raise ValueError("mask must hold only 0 and 1 (1 on response tokens).")
    if loss_type not in ("grpo", "bnpo", "dr_grpo", "dapo"):
        raise ValueError(f"unknown loss_type {loss_type!r}; choose 'grpo', 'bnpo', 'dr_grpo' or 'dapo'.")
    if level not in ("token", "sequence"):
        raise ValueError(f"importance_sampling_level must be 'token' or 'sequence', not {level!r}.")
    if not 0 <= epsilon_low < 1 or (epsilon_high is not None and epsilon_high < 0):
        raise ValueError(f"need 0 <= epsilon_low < 1 and epsilon_high >= 0; got {epsilon_low}, {epsilon_high}.")
    if delta is not None and delta <= 0:
        raise ValueError(f"delta={delta} must be positive (INTELLECT-2 recommends more than 1 + epsilon_high).")
    if beta != 0.0 and (ref_log_probs is None or ref_log_probs.shape != log_probs.shape):
        raise ValueError("beta != 0 needs ref_log_probs of the same [B, T] shape as log_probs.")
    if max_completion_length is not None and max_completion_length < int(mask.sum(-1).max()):
        raise ValueError(f"a response has {int(mask.sum(-1).max())} tokens, more than "
                         f"max_completion_length={max_completion_length}.")
