"""The PPO epochs of one ``step()``: shuffled minibatches, clipped losses, optimizer steps.

Losses are token means over the *global* minibatch: each process sums over its own rows and divides
by the minibatch's token count over all processes, and gradients are summed across processes. In
one process that is TRL 0.11's ``masked_mean`` and the all-reduces return their inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rlcode.errors import TrainingDiverged
from rlcode.losses import clipped_surrogate_terms, clipped_value_terms
from rlcode.rlhf.config import PPOConfig
from rlcode.rlhf.distributed import all_reduce_sum, is_distributed, sum_gradients
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


# The detached per-token values each minibatch keeps for its statistics: rows of a [7, N] tensor.
TOKEN_ROWS = ("log_ratio", "ratio", "values", "entropy", "old_values", "advantages", "returns")
LOG_RATIO, RATIO, ADVANTAGES = TOKEN_ROWS.index("log_ratio"), TOKEN_ROWS.index("ratio"), TOKEN_ROWS.index("advantages")


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
    skipped: int  # minibatches whose loss ratio_threshold zeroed




def clipped_losses(ratio: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor, old_values: torch.Tensor,
                   returns: torch.Tensor, config: PPOConfig) -> tuple[torch.Tensor, ...]:
    """Per-token (policy loss, clipped policy loss, value loss, clipped value loss), each [N], with the
    config's clip ranges. ``minibatch_loss`` and ``minibatch_stats`` both use them."""
    return (*clipped_surrogate_terms(ratio, advantages, config.cliprange),
            *clipped_value_terms(values, old_values, returns, config.cliprange_value))


def minibatch_loss(
    model: torch.nn.Module, batch: ResponseBatch, old: torch.Tensor, token_count: float, config: PPOConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped policy + value loss of ``batch`` (this process's rows of a minibatch).

    ``old`` [4, N] holds the rollout's log-probs, values, advantages and returns at the trained tokens.
    Every sum is divided by ``token_count``, the minibatch's trained tokens over all processes.
    Returns (loss, detached per-token values [len(TOKEN_ROWS), N] for ``minibatch_stats``).
    """
    old_log_probs, old_values, advantages, returns = old
    outputs = response_forward(model, batch, values=True, entropy=True)
    log_probs, values = outputs.log_probs, outputs.values
    assert values is not None and outputs.entropy is not None

    log_ratio = log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    policy_losses, policy_losses_clipped, value_losses, value_losses_clipped = clipped_losses(
        ratio, advantages, values, old_values, returns, config)
    value_loss = 0.5 * torch.maximum(value_losses, value_losses_clipped).sum() / token_count
    policy_loss = torch.maximum(policy_losses, policy_losses_clipped).sum() / token_count
    loss = policy_loss + config.vf_coef * value_loss
    tokens = torch.stack([log_ratio.detach(), ratio.detach(), values.detach(), outputs.entropy, old_values,
                          advantages, returns])  # [len(TOKEN_ROWS), N]
    return loss, tokens


def minibatch_stats(tokens: list[torch.Tensor], token_counts: torch.Tensor, keep: torch.Tensor,
                    config: PPOConfig) -> torch.Tensor:
    """TRL's statistics of every minibatch at once, [M, len(MINIBATCH_STATS)], from their per-token values.

    ``tokens`` holds each minibatch's [len(TOKEN_ROWS), N_m] (local rows), ``token_counts`` [M] its trained
    tokens over all processes and ``keep`` [M] 0 where ratio_threshold zeroed its loss. The losses are
    ``minibatch_loss``'s (``clipped_losses``); variances are TRL's masked_var (two passes, Bessel-corrected).
    """
    lengths = torch.tensor([t.shape[1] for t in tokens], device=token_counts.device)
    segment = torch.repeat_interleave(torch.arange(len(tokens), device=token_counts.device), lengths)  # [N_all]
    log_ratio, ratio, values, entropy, old_values, advantages, returns = torch.cat(tokens, dim=1)

    def token_means(*per_token: torch.Tensor) -> torch.Tensor:
        """[M, len(per_token)]: each minibatch's sums over all processes, divided by its token count."""
        stacked = torch.stack(per_token, dim=1)  # [N_all, k]
        sums = torch.zeros(len(tokens), stacked.shape[1], dtype=stacked.dtype, device=stacked.device)
        return all_reduce_sum(sums.index_add_(0, segment, stacked)) / token_counts[:, None]

    policy_losses, policy_losses_clipped, value_losses, value_losses_clipped = clipped_losses(
        ratio, advantages, values, old_values, returns, config)
    means = dict(zip(TOKEN_MEANS, token_means(
        torch.maximum(policy_losses, policy_losses_clipped), 0.5 * torch.maximum(value_losses, value_losses_clipped),
        entropy, 0.5 * log_ratio**2, -log_ratio, torch.gt(policy_losses_clipped, policy_losses).to(ratio.dtype),
        advantages, returns, values, value_losses, torch.gt(value_losses_clipped, value_losses).to(ratio.dtype),
        old_values, ratio,
    ).unbind(dim=1)))
    centered = token_means((returns - means["returns/mean"][segment]) ** 2, (old_values - means["val/mean"][segment]) ** 2)
    bessel = token_counts / (token_counts - 1)  # TRL's unbiased masked_var
    bessel[token_counts <= 1] = float("nan")
    policy, value = means["loss/policy"] * keep, means["loss/value"] * keep
    stats = means | {
        "loss/policy": policy, "loss/value": value, "loss/total": policy + config.vf_coef * value,
        "returns/var": centered[:, 0] * bessel, "val/var": centered[:, 1] * bessel,
    }
    return torch.stack([stats[name] for name in MINIBATCH_STATS], dim=1)


def ppo_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: list[torch.nn.Parameter],
    rollout: Rollout,
    token_counts: np.ndarray,
    row_offset: int,
    config: PPOConfig,
    first_order: np.ndarray | None = None,
) -> UpdateResult:
    """``ppo_epochs`` passes of shuffled minibatches; one optimizer step per backward batch.

    The order of each epoch is ``np.random.permutation(batch_size)`` from numpy's global RNG, as in
    TRL 0.11, so that the same seed gives the same minibatches. ``token_counts`` [batch_size] holds
    every global row's number of trained tokens; this process holds rows [row_offset, row_offset + B).
    ``first_order`` is epoch 0's order when the caller drew it already (to group its no-grad forwards).
    The statistics are computed once at the end (``minibatch_stats``), not per minibatch.
    """
    device = rollout.log_probs.device
    old = torch.stack([rollout.log_probs, rollout.values, rollout.advantages, rollout.returns])  # [4, B, T-1]
    tokens: list[torch.Tensor] = []
    counts: list[float] = []
    keeps: list[torch.Tensor] = []
    accumulation = config.gradient_accumulation_steps
    for epoch in range(config.ppo_epochs):
        order = first_order if epoch == 0 and first_order is not None else np.random.permutation(config.batch_size)
        for start in range(0, config.batch_size, config.mini_batch_size):
            global_rows = order[start : start + config.mini_batch_size]
            token_count = float(token_counts[global_rows].sum())
            local = global_rows - row_offset
            rows = local[(local >= 0) & (local < rollout.batch.size)]
            if len(rows):
                batch = rollout.batch.rows(rows)
                positions = batch.mask > 0  # [b, L-1]
                index = torch.as_tensor(rows, device=device)
                loss, minibatch_tokens = minibatch_loss(
                    model, batch, old[:, index, : positions.shape[1]][:, positions], token_count, config)
            else:  # only under torchrun: another process holds the whole minibatch
                loss, minibatch_tokens = None, torch.zeros(len(TOKEN_ROWS), 0, device=device)
            # TRL zeroes the loss of a minibatch whose mean ratio is too large, yet still steps.
            ratio_mean = all_reduce_sum(minibatch_tokens[RATIO].sum()) / token_count  # a no-op all-reduce alone
            keep = (ratio_mean <= config.ratio_threshold).to(minibatch_tokens.dtype)
            if loss is not None:
                (loss * keep / accumulation).backward()
            tokens.append(minibatch_tokens)
            counts.append(token_count)
            keeps.append(keep)
            if (start // config.mini_batch_size + 1) % accumulation == 0:
                optimizer_step(optimizer, parameters, config.max_grad_norm)
        # TRL checks only the last minibatch's policy KL, once per epoch.
        if config.early_stopping:
            policy_kl = all_reduce_sum(-tokens[-1][LOG_RATIO].sum()) / counts[-1]
            if float(policy_kl) > 1.5 * config.target_kl:
                break
    keep_all = torch.stack(keeps)
    stats = minibatch_stats(tokens, torch.tensor(counts, dtype=keep_all.dtype, device=device), keep_all, config)
    ratios, advantages = [t[RATIO] for t in tokens], [t[ADVANTAGES] for t in tokens]
    return UpdateResult(stats, ratios, advantages, int(len(keeps) - keep_all.sum()))


def optimizer_step(optimizer: torch.optim.Optimizer, parameters: list[torch.nn.Parameter], max_norm: float | None,
                   advice: str = "Lower the learning rate, scale the scores down or set PPOConfig.score_clip.",
                   ) -> float:
    """Sum gradients over processes, clip (every step, unlike TRL 0.11), step, and clear; returns the norm.

    Shared by PPOTrainer and GRPOTrainer; ``advice`` ends the error a non-finite norm raises."""
    if is_distributed():
        for parameter in parameters:  # a process may have held no rows of this backward batch
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        sum_gradients(parameters)
    # clip_grad_norm_ with max_norm=inf measures without scaling; a non-finite norm must never reach the weights
    norm = torch.nn.utils.clip_grad_norm_(parameters, math.inf if max_norm is None else max_norm, foreach=True)
    if not bool(torch.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(
            f"step() stopped: the gradient norm is {float(norm)}; this optimizer step was not applied, so the "
            f"weights stay finite (earlier minibatches of this step() were applied). {advice}"
        )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)
