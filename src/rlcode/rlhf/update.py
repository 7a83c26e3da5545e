"""The PPO epochs of one ``step()``: shuffled minibatches, clipped losses, optimizer steps.

Losses are token means over the *global* minibatch: each process sums over its own rows and divides
by the minibatch's token count over all processes, and gradients are summed across processes. In
one process that is TRL 0.11's ``masked_mean`` and the all-reduces return their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlcode.distributed import all_reduce_sum, is_distributed, sum_gradients
from rlcode.rlhf.config import PPOConfig
from rlcode.rlhf.sequences import ResponseBatch, response_forward

# Per-minibatch statistics, in the order of the rows of the stats matrix (TRL's names under ppo/).
MINIBATCH_STATS = (
    "loss/policy", "loss/value", "loss/total", "policy/entropy", "policy/approxkl", "policy/policykl",
    "policy/clipfrac", "policy/advantages_mean", "returns/mean", "returns/var", "val/vpred", "val/error",
    "val/clipfrac", "val/mean", "val/var", "policy/ratio_mean",
)
# The token means each process sums over its rows (divided by the global token count) and all-reduces.
TOKEN_MEANS = (
    "loss/policy", "loss/value", "policy/entropy", "policy/approxkl", "policy/policykl", "policy/clipfrac",
    "policy/advantages_mean", "returns/mean", "val/vpred", "val/error", "val/clipfrac", "val/mean",
    "policy/ratio_mean",
)


POLICY_KL = MINIBATCH_STATS.index("policy/policykl")


@dataclass
class Rollout:
    """What the no-grad passes and advantage estimation produced, [B, T-1] each (local rows)."""

    batch: ResponseBatch
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


@dataclass
class UpdateResult:
    stats: torch.Tensor  # [minibatches, len(MINIBATCH_STATS)]
    ratios: list[torch.Tensor]  # per minibatch, [N_mb] response-token ratios (local rows)
    advantages: list[torch.Tensor]  # per minibatch, [N_mb]
    skipped: int  # minibatches whose loss ratio_threshold zeroed (tensor count, read at the end)


def minibatch_loss(
    model: torch.nn.Module, rollout: Rollout, rows: np.ndarray, token_count: float, config: PPOConfig
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped policy + value loss of ``rows`` (this process's part of a minibatch).

    Returns (loss or None when this process holds no rows, sums [len(TOKEN_MEANS)] to all-reduce,
    ratios, advantages).
    Every sum is divided by ``token_count``, the minibatch's trained tokens over all processes.
    """
    device = rollout.log_probs.device
    if len(rows) == 0:  # only under torchrun: another process holds the whole minibatch
        empty = torch.zeros(0, device=device)
        return None, torch.zeros(len(TOKEN_MEANS), device=device), empty, empty
    batch = rollout.batch.rows(rows)
    positions = batch.mask > 0  # [b, L-1]
    index = torch.as_tensor(rows, device=device)
    width = positions.shape[1]

    def old(tensor: torch.Tensor) -> torch.Tensor:
        return tensor[index, :width][positions]  # [N]

    old_log_probs, old_values = old(rollout.log_probs), old(rollout.values)
    advantages, returns = old(rollout.advantages), old(rollout.returns)
    outputs = response_forward(model, batch, values=True, entropy=True)
    log_probs, values = outputs.log_probs, outputs.values
    assert values is not None and outputs.entropy is not None

    # Value loss, clipped around the rollout's values (TRL's clip_by_value).
    values_clipped = torch.clamp(values, old_values - config.cliprange_value, old_values + config.cliprange_value)
    value_losses = (values - returns) ** 2
    value_losses_clipped = (values_clipped - returns) ** 2
    value_loss = 0.5 * torch.maximum(value_losses, value_losses_clipped).sum() / token_count

    # Clipped surrogate (Schulman et al. 2017, eq. 7).
    log_ratio = log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    policy_losses = -advantages * ratio
    policy_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - config.cliprange, 1.0 + config.cliprange)
    policy_loss = torch.maximum(policy_losses, policy_losses_clipped).sum() / token_count
    loss = policy_loss + config.vf_coef * value_loss

    with torch.no_grad():
        detached_ratio = ratio.detach()
        sums = torch.stack([
            policy_loss.detach(),
            value_loss.detach(),
            outputs.entropy.sum() / token_count,
            0.5 * (log_ratio.detach() ** 2).sum() / token_count,  # approxkl
            -log_ratio.detach().sum() / token_count,  # policykl
            torch.gt(policy_losses_clipped, policy_losses).sum() / token_count,
            advantages.sum() / token_count,
            returns.sum() / token_count,
            values.detach().sum() / token_count,
            ((values.detach() - returns) ** 2).sum() / token_count,
            torch.gt(value_losses_clipped, value_losses).sum() / token_count,
            old_values.sum() / token_count,
            detached_ratio.sum() / token_count,
        ])
    return loss, sums, detached_ratio, advantages


def _centered_sums(
    rollout: Rollout, rows: np.ndarray, returns_mean: torch.Tensor, values_mean: torch.Tensor, token_count: float
) -> torch.Tensor:
    """Σ(x − mean)² / count for returns and old values: the second pass of TRL's masked_var."""
    if len(rows) == 0:
        return torch.zeros(2, device=returns_mean.device)
    batch = rollout.batch.rows(rows)
    positions = batch.mask > 0
    index = torch.as_tensor(rows, device=returns_mean.device)
    width = positions.shape[1]
    returns = rollout.returns[index, :width][positions]
    values = rollout.values[index, :width][positions]
    return torch.stack([((returns - returns_mean) ** 2).sum(), ((values - values_mean) ** 2).sum()]) / token_count


def ppo_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: list[torch.nn.Parameter],
    rollout: Rollout,
    token_counts: np.ndarray,
    row_offset: int,
    config: PPOConfig,
) -> UpdateResult:
    """``ppo_epochs`` passes of shuffled minibatches; one optimizer step per backward batch.

    The order of each epoch is ``np.random.permutation(batch_size)`` from numpy's global RNG, as in
    TRL 0.11, so that the same seed gives the same minibatches. ``token_counts`` [batch_size] holds
    every global row's number of trained tokens; this process holds rows [row_offset, row_offset + B).
    """
    local_size = rollout.batch.size
    rows_stats: list[torch.Tensor] = []
    ratios: list[torch.Tensor] = []
    advantages: list[torch.Tensor] = []
    skipped = torch.zeros((), device=rollout.log_probs.device)
    accumulation = config.gradient_accumulation_steps
    for _epoch in range(config.ppo_epochs):
        order = np.random.permutation(config.batch_size)
        for start in range(0, config.batch_size, config.mini_batch_size):
            global_rows = order[start : start + config.mini_batch_size]
            token_count = float(token_counts[global_rows].sum())
            local = global_rows - row_offset
            rows = local[(local >= 0) & (local < local_size)]
            loss, sums, ratio, minibatch_advantages = minibatch_loss(model, rollout, rows, token_count, config)
            means = dict(zip(TOKEN_MEANS, all_reduce_sum(sums)))  # all_reduce_sum: a no-op in one process
            # TRL zeroes the loss of a minibatch whose mean ratio is too large, yet still steps.
            keep = (means["policy/ratio_mean"] <= config.ratio_threshold).to(sums.dtype)
            skipped = skipped + (1 - keep)
            if loss is not None:
                (loss * keep / accumulation).backward()
            centered = all_reduce_sum(
                _centered_sums(rollout, rows, means["returns/mean"], means["val/mean"], token_count)
            )
            bessel = token_count / (token_count - 1) if token_count > 1 else float("nan")
            policy, value = means["loss/policy"] * keep, means["loss/value"] * keep
            stats = means | {
                "loss/policy": policy, "loss/value": value, "loss/total": policy + config.vf_coef * value,
                "returns/var": centered[0] * bessel, "val/var": centered[1] * bessel,
            }
            rows_stats.append(torch.stack([stats[name] for name in MINIBATCH_STATS]))
            ratios.append(ratio)
            advantages.append(minibatch_advantages)
            if (start // config.mini_batch_size + 1) % accumulation == 0:
                _optimizer_step(optimizer, parameters, config.max_grad_norm)
        # TRL checks only the last minibatch's policy KL, once per epoch.
        if config.early_stopping and float(rows_stats[-1][POLICY_KL]) > 1.5 * config.target_kl:
            break
    return UpdateResult(torch.stack(rows_stats), ratios, advantages, int(skipped))


def _optimizer_step(optimizer: torch.optim.Optimizer, parameters: list[torch.nn.Parameter], max_norm: float | None) -> None:
    """Sum gradients over processes, clip (every step, unlike TRL 0.11), step, and clear."""
    if is_distributed():
        for parameter in parameters:  # a process may have held no rows of this backward batch
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        sum_gradients(parameters)
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
