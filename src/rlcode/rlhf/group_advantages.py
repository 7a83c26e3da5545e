"""Per-completion advantages for group-sampled RLHF (GRPO, Dr. GRPO, RLOO, REINFORCE++-baseline).

A prompt gets G completions; its scores form one row of a [P, G] table. Every estimator here
subtracts a baseline built from the prompt's own group, so no value model is needed. The constants
follow TRL 1.16 (``GRPOTrainer._generate_and_score_completions``, ``RLOOTrainer``'s counterpart):
standard deviations are Bessel-corrected (``trl.trainer.utils.nanstd``) and 1e-4 is added to them.

| estimator      | advantage of completion i of a group                   | default ``scale_rewards`` |
| -------------- | ------------------------------------------------------ | ------------------------- |
| "grpo"         | (r_i − mean(group)) / (std + 1e-4)                     | "group"                   |
| "dr_grpo"      | r_i − mean(group)  (Liu et al. 2025, no std division)  | "none"                    |
| "rloo"         | r_i − mean_{j≠i} r_j  (Ahmadian et al. 2024)           | "none"                    |
| "reinforce_pp" | whiten_batch(r_i − mean(group))                        | "batch"                   |

"grpo" with ``scale_rewards``: "group" divides by the group's std, "batch" by the std of all P·G
raw scores (TRL divides the group-centred scores by the std of the *uncentred* scores), "none" not
at all (then it equals "dr_grpo"). "rloo" with "batch" is TRL's ``RLOOConfig.normalize_advantages``:
the leave-one-out advantages are whitened over the batch, (A − mean A) / (std A + 1e-4).
"reinforce_pp" is REINFORCE++-baseline (Hu et al. 2025, OpenRLHF's ``reinforce_baseline``): the
group mean is subtracted, then the result is whitened over the whole batch, (A − mean A) / (std A +
1e-4); for single-token rewards the reward-to-go of REINFORCE++ is the score itself. A combination
that names a different estimator (Dr. GRPO with a std, RLOO with group scaling) is a ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

Estimator = Literal["grpo", "dr_grpo", "rloo", "reinforce_pp"]
Scale = Literal["group", "batch", "none"]

STD_EPS = 1e-4  # TRL 1.16 adds this to every std it divides by (grpo_trainer.py, rloo_trainer.py)
_SCALES: dict[str, tuple[str, ...]] = {  # the first one is the estimator's default
    "grpo": ("group", "batch", "none"),
    "dr_grpo": ("none",),
    "rloo": ("none", "batch"),
    "reinforce_pp": ("batch",),
}


def group_advantages(
    scores: torch.Tensor | Sequence[Sequence[float]], estimator: Estimator = "grpo",
    scale_rewards: Scale | None = None, num_generations: int | None = None,
) -> torch.Tensor:
    """Advantages in the layout of ``scores``: a [P, G] tensor, a list of P equal-length lists
    (returned as [P, G]), or TRL's flat [P·G] tensor with ``num_generations`` = G, groups consecutive.
    ``scale_rewards`` None means the estimator's default (table above)."""
    grouped = _grouped_scores(scores, num_generations)                           # [P, G]
    scale = _checked_scale(estimator, scale_rewards, grouped.shape[1])
    if scale == "batch" and grouped.numel() < 2:
        raise ValueError("scale_rewards='batch' needs at least 2 scores in the batch for a std, got 1.")
    centred = grouped - grouped.mean(dim=1, keepdim=True)                        # [P, G]
    if estimator == "rloo":
        # r_i − Σ_{j≠i} r_j / (G − 1) = (r_i − mean) · G / (G − 1)
        advantages = centred * (grouped.shape[1] / (grouped.shape[1] - 1))
    else:
        advantages = centred
    if scale == "group":
        advantages = advantages / (grouped.std(dim=1, keepdim=True) + STD_EPS)
    elif scale == "batch" and estimator == "grpo":
        advantages = advantages / (grouped.std() + STD_EPS)
    elif scale == "batch":  # rloo's normalize_advantages and REINFORCE++: whiten the advantages themselves
        advantages = (advantages - advantages.mean()) / (advantages.std() + STD_EPS)
    if isinstance(scores, torch.Tensor) and scores.dim() == 1:
        return advantages.reshape(-1)
    return advantages


def _grouped_scores(scores: torch.Tensor | Sequence[Sequence[float]], num_generations: int | None) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        sizes = sorted({len(group) for group in scores})
        if len(sizes) > 1:
            raise ValueError(
                f"group_advantages got groups of sizes {sizes}; every prompt needs the same number of completions."
            )
        scores = torch.tensor([[float(x) for x in group] for group in scores], dtype=torch.float32)
        if scores.dim() != 2:  # an empty list of groups
            raise ValueError("group_advantages got no scores; pass at least one group of completions' scores.")
    elif scores.dim() == 1:
        if num_generations is None or num_generations < 1 or scores.numel() % num_generations:
            raise ValueError(
                f"group_advantages got {scores.numel()} flat scores with num_generations={num_generations}; "
                "a flat tensor needs num_generations = G >= 1 dividing its length (P·G scores, groups consecutive)."
            )
        scores = scores.reshape(-1, num_generations)
    elif scores.dim() != 2:
        raise ValueError(f"group_advantages takes scores of shape [P, G] or [P·G], not {tuple(scores.shape)}.")
    elif num_generations is not None and scores.shape[1] != num_generations:
        raise ValueError(f"scores have {scores.shape[1]} completions per prompt but num_generations={num_generations}.")
    if scores.numel() == 0:
        raise ValueError("group_advantages got no scores; pass at least one group of completions' scores.")
    if not torch.isfinite(scores).all():
        raise ValueError("group_advantages got NaN or infinite scores; fix the reward function or drop those groups.")
    return scores.float() if not scores.is_floating_point() else scores


def _checked_scale(estimator: str, scale: str | None, group_size: int) -> str:
    if estimator not in _SCALES:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(_SCALES)}.")
    scale = _SCALES[estimator][0] if scale is None else scale
    if scale not in _SCALES[estimator]:
        raise ValueError(
            f"estimator {estimator!r} takes scale_rewards in {_SCALES[estimator]}, not {scale!r} "
            "(Dr. GRPO is GRPO without the std; use estimator='grpo' to scale)."
        )
    if group_size < 2 and (estimator == "rloo" or scale == "group"):
        raise ValueError(
            f"estimator {estimator!r} with scale_rewards={scale!r} needs at least 2 completions per prompt, got 1."
        )
    return scale
