"""Scores → per-token rewards → advantages, with statistics taken over every process's tokens.

In one process ``all_reduce_sum`` returns its input, so these are TRL 0.11's ``compute_rewards`` and
``compute_advantages`` operation for operation; under torchrun the same code whitens with the
global batch's mean and variance.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rlcode.advantages import gae
from rlcode.masked import masked_whiten
from rlcode.rlhf.distributed import all_gather_cat, all_reduce_sum
from rlcode.statistics import RunningMeanStd


def token_rewards(
    scores: torch.Tensor, kls: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards −β·KL with each score added at its row's last trained token.

    scores [B], kls and mask [B, T-1]. Returns (rewards, non_score_rewards), both [B, T-1].
    """
    non_score = -kl_coef * kls  # [B, T-1]
    rewards = non_score.clone()
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask > 0, positions, -1).amax(dim=1)  # [B], TRL: mask.nonzero()[-1]
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards, non_score


def token_advantages(
    values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float,
    whiten_rewards: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GAE over masked values and rewards, then whitened advantages (TRL 0.11 ``compute_advantages``).

    Returns (masked values, whitened advantages, returns), each [B, T-1]. A response is one episode:
    the value after the last column is 0 and the λ-sum never stops inside a row.
    """
    values = values * mask
    rewards = rewards * mask
    if whiten_rewards:
        rewards = masked_whiten(rewards, mask, shift_mean=False, reduce=all_reduce_sum)
    next_values = torch.nn.functional.pad(values[:, 1:], (0, 1))  # [B, T-1]
    advantages, returns = gae(rewards, values, next_values, torch.ones_like(values), gamma, lam)
    advantages = masked_whiten(advantages, mask, reduce=all_reduce_sum).detach()
    return values, advantages, returns


class RunningMoments(RunningMeanStd):
    """Running mean and std of all scores seen: ``rlcode.statistics.RunningMeanStd`` with TRL's initial
    count (1e-24) and TRL's names, plus the unbiased std over everything seen.

    TRL 0.11 keeps these as Python floats and then calls ``.to()`` on them, so its score scaling
    crashes on the first step; here it works. Under torchrun every process updates with the
    gathered global scores, so the moments agree everywhere.
    """

    def __init__(self) -> None:
        super().__init__((), epsilon=1e-24)
        self.mean, self.var, self.std = 0.0, 1.0, 1.0

    def update(self, scores: torch.Tensor) -> tuple[float, float]:  # type: ignore[override]
        """Fold in a batch of scores; returns that batch's (mean, unbiased std)."""
        xs = all_gather_cat(scores.detach()).double().cpu().numpy()  # [N] over every process
        super().update(xs)
        self.mean, self.var = float(self.mean), float(self.var)
        self.std = math.sqrt(self.var * self.count / (self.count - 1))
        return float(xs.mean()), (float(xs.std(ddof=1)) if xs.size > 1 else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.std, self.var, self.count = (float(state[k]) for k in ("mean", "std", "var", "count"))


def processed_scores(
    scores: torch.Tensor, moments: RunningMoments, scaling: bool, norm: bool, clip: float | None
) -> torch.Tensor:
    """Score scaling (÷ running std), normalisation (− running mean) and clipping, as TRL 0.11 intends."""
    if scaling:
        moments.update(scores)
        factor = moments.std + torch.finfo(scores.dtype).eps
        scores = (scores - moments.mean) / factor if norm else scores / factor
    if clip is not None:
        scores = torch.clamp(scores, -clip, clip)
    return scores
