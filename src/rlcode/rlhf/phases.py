"""TRL 0.11's ``PPOTrainer`` phase methods as plain functions over [B, T−1] tensors.

``PPOTrainer.prepare_model_inputs`` … ``loss`` call these with the trainer's config; their shapes,
alignment and return values are TRL's (trl/trainer/ppo_trainer.py), computed with rlcode's own
functions (``sequences``, ``kl``, ``rewards``, ``losses``). ``step()`` runs the same maths on flat
per-token tensors for speed, calling ``compute_rewards`` and ``compute_advantages`` itself.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from rlcode.losses import clipped_surrogate_terms, clipped_value_terms, entropy_from_logits
from rlcode.masked import masked_mean, masked_var
from rlcode.rlhf.kl import kl_penalty
from rlcode.rlhf.rewards import token_advantages, token_rewards
from rlcode.rlhf.sequences import ResponseBatch


def prepare_model_inputs(queries: list[torch.Tensor], responses: list[torch.Tensor], pad_token_id: int,
                         device: torch.device) -> dict[str, torch.Tensor]:
    """Each query + response, right-padded: {"input_ids": [B, T], "attention_mask": [B, T]}."""
    batch = ResponseBatch.pad(queries, responses, None, pad_token_id, device)
    return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}


def response_positions(queries: list[torch.Tensor], responses: list[torch.Tensor], attention_mask: torch.Tensor,
                       response_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
    """[B, T−1] 1 where position t's output predicts a response token (t in [Lq−1, Lq−1+Lr), after any left
    padding), times the response masks, and 0 where token t+1 is padding; in attention_mask's dtype."""
    positions = torch.arange(attention_mask.shape[1] - 1, device=attention_mask.device)  # [T-1]
    first = attention_mask.int().argmax(dim=1)  # [B], left padding before the query (0 when right-padded)
    starts = first + torch.tensor([len(q) - 1 for q in queries], device=attention_mask.device)
    ends = starts + torch.tensor([len(r) for r in responses], device=attention_mask.device)
    offsets = positions - starts[:, None]  # [B, T-1], index into the response
    masks = ((offsets >= 0) & (positions < ends[:, None])).to(attention_mask.dtype) * attention_mask[:, 1:]
    if response_masks is not None:
        for row, response_mask in enumerate(response_masks):
            start, end = int(starts[row]), int(ends[row])
            masks[row, start:end] = masks[row, start:end] * response_mask.to(masks.device, masks.dtype)
    return masks


def batched_forward_pass(
    model: Any, queries: list[torch.Tensor], responses: list[torch.Tensor], model_inputs: dict[str, torch.Tensor],
    chunk_size: int, return_logits: bool = False, response_masks: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(log-probs, logits or None, values, masks) over every position, in chunks of ``chunk_size`` rows.

    Position t holds the log-prob of token t+1 and the value of the state after token t: each is
    [B, T−1] ([B, T−1, V] for the logits, only when ``return_logits``). ``model`` is a
    CausalLMWithValueHead; gradients flow when the caller enables them.
    """
    input_ids, attention_mask = model_inputs["input_ids"], model_inputs["attention_mask"]
    log_probs, logits, values = [], [], []
    for start in range(0, len(queries), chunk_size):
        ids, mask = input_ids[start : start + chunk_size], attention_mask[start : start + chunk_size]
        everywhere = torch.ones_like(ids, dtype=torch.bool)  # [b, T]: outputs at every position
        chunk_logits, chunk_values = model.selected_outputs(ids, mask, everywhere, values=True)
        chunk_logits = chunk_logits.view(*ids.shape, -1)[:, :-1]  # [b, T-1, V]
        log_softmax = chunk_logits.log_softmax(dim=-1)
        log_probs.append(log_softmax.gather(2, ids[:, 1:, None]).squeeze(2))  # [b, T-1]
        values.append(chunk_values.view(ids.shape)[:, :-1])  # [b, T-1]
        if return_logits:
            logits.append(chunk_logits)
    masks = response_positions(queries, responses, attention_mask, response_masks)
    return torch.cat(log_probs), (torch.cat(logits) if return_logits else None), torch.cat(values), masks


def compute_rewards(scores: Any, log_probs: torch.Tensor, ref_log_probs: torch.Tensor, masks: torch.Tensor,
                    kl_coef: float, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rewards, non-score rewards, KLs), each [B, T−1]: −β·KL everywhere, the score added at each row's last
    masked position. For kind "full" pass log-softmax rows [B, T−1, V] instead of sampled log-probs."""
    scores = torch.stack([torch.as_tensor(s) for s in scores]) if isinstance(scores, (list, tuple)) else scores
    kls = kl_penalty(log_probs, ref_log_probs, kind)  # [B, T-1]
    rewards, non_score = token_rewards(scores.to(kls.device), kls, masks, kl_coef)
    return rewards, non_score, kls


def compute_advantages(values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float,
                       whiten_rewards: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(masked values, whitened GAE advantages, returns), each [B, T−1]."""
    return token_advantages(values, rewards, mask.to(values.dtype), gamma, lam, whiten_rewards)


def ppo_loss(
    old_log_probs: torch.Tensor, values: torch.Tensor, logits: torch.Tensor, vpreds: torch.Tensor,
    log_probs: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor, returns: torch.Tensor, config: Any,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(policy loss, vf_coef · value loss, TRL's 17 statistics) of one minibatch, masked token means.

    ``values`` are the rollout's (old) values and ``vpreds`` the new ones; logits [B, T−1, V] give the
    entropy. A mean ratio above ``config.ratio_threshold`` zeroes both losses, with a warning, as in TRL.
    """
    mask = mask.to(log_probs.dtype)
    ratio = torch.exp(log_probs - old_log_probs)
    policy_losses, policy_losses_clipped = clipped_surrogate_terms(ratio, advantages, config.cliprange)
    value_losses, value_losses_clipped = clipped_value_terms(vpreds, values, returns, config.cliprange_value)
    policy_loss = masked_mean(torch.maximum(policy_losses, policy_losses_clipped), mask)
    value_loss = 0.5 * masked_mean(torch.maximum(value_losses, value_losses_clipped), mask)
    ratio_mean = float(masked_mean(ratio, mask))
    if ratio_mean > config.ratio_threshold:
        warnings.warn(f"the minibatch's mean ratio {ratio_mean:.2f} exceeds ratio_threshold="
                      f"{config.ratio_threshold:.2f}; its loss is zeroed (TRL 0.11 behaviour).", stacklevel=3)
        policy_loss, value_loss = policy_loss * 0.0, value_loss * 0.0
    total = policy_loss + config.vf_coef * value_loss
    log_ratio = log_probs - old_log_probs
    detached = {
        "loss/policy": policy_loss, "loss/value": value_loss, "loss/total": total,
        "policy/entropy": masked_mean(entropy_from_logits(logits), mask),
        "policy/approxkl": 0.5 * masked_mean(log_ratio**2, mask),
        "policy/policykl": masked_mean(-log_ratio, mask),
        "policy/clipfrac": masked_mean(torch.gt(policy_losses_clipped, policy_losses).to(mask.dtype), mask),
        "policy/advantages": advantages, "policy/advantages_mean": masked_mean(advantages, mask),
        "policy/ratio": ratio,
        "returns/mean": masked_mean(returns, mask), "returns/var": masked_var(returns, mask),
        "val/vpred": masked_mean(vpreds, mask), "val/error": masked_mean(value_losses, mask),
        "val/clipfrac": masked_mean(torch.gt(value_losses_clipped, value_losses).to(mask.dtype), mask),
        "val/mean": masked_mean(values, mask), "val/var": masked_var(values, mask),
    }
    stats = {name: value.detach() for name, value in detached.items()}
    return policy_loss, config.vf_coef * value_loss, stats

