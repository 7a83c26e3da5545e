"""TRL 0.11's 40 statistics of one ``step()``, reduced over all processes.

Scalars are Python floats. Array statistics are numpy arrays; ``objective/logprobs``,
``objective/ref_logprobs``, ``ppo/policy/ratio`` and ``ppo/policy/advantages`` hold only the trained
response tokens (TRL also includes query and padding positions, whose values mean nothing);
``objective/kl_dist`` and ``tokens/*_dist`` hold one value per row of the global batch.
"""

from __future__ import annotations

import numpy as np
import torch

from rlcode.masked import masked_mean
from rlcode.rlhf.distributed import all_gather_cat, all_reduce_sum, is_distributed, world_size
from rlcode.rlhf.update import MINIBATCH_STATS, UpdateResult


def gather_ragged(flat: torch.Tensor) -> torch.Tensor:
    """Concatenate 1-D tensors of different lengths from every process, in rank order."""
    if not is_distributed():
        return flat
    lengths = all_gather_cat(torch.tensor([flat.numel()], device=flat.device))
    longest = int(lengths.max())
    padded = torch.zeros(longest, dtype=flat.dtype, device=flat.device)
    padded[: flat.numel()] = flat
    parts = all_gather_cat(padded[None]).reshape(world_size(), longest)
    return torch.cat([parts[i, : int(n)] for i, n in enumerate(lengths.tolist())])


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def step_stats(
    *,
    scores: torch.Tensor,
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    kls: torch.Tensor,
    non_score: torch.Tensor,
    mask: torch.Tensor,
    query_lengths: np.ndarray,
    response_lengths: np.ndarray,
    update: UpdateResult,
    kl_coef: float,
    learning_rate: float,
) -> tuple[dict[str, float | np.ndarray], float]:
    """The statistics dict and the global mean KL (the adaptive controller's input).

    scores [B]; log_probs, ref_log_probs, kls, non_score, mask [B, T-1] (local rows).
    """
    positions = mask > 0
    kl_per_row = all_gather_cat((kls * mask).sum(dim=-1))  # [B_global]
    entropy_per_row = all_gather_cat((-log_probs * mask).sum(dim=-1))
    all_scores = all_gather_cat(scores.float())
    lengths = all_gather_cat(torch.as_tensor(np.stack([query_lengths, response_lengths], 1), dtype=torch.float))
    query_lens, response_lens = lengths[:, 0], lengths[:, 1]
    mean_kl = kl_per_row.mean()

    # Mean over minibatches of each minibatch statistic (TRL: stack_dicts, then mean over axis 0).
    minibatch = dict(zip(MINIBATCH_STATS, update.stats.mean(dim=0).tolist()))
    stats: dict[str, float | np.ndarray] = {
        "objective/kl": float(mean_kl),
        "objective/kl_dist": _numpy(kl_per_row),
        "objective/logprobs": _numpy(gather_ragged(log_probs[positions])),
        "objective/ref_logprobs": _numpy(gather_ragged(ref_log_probs[positions])),
        "objective/kl_coef": float(kl_coef),
        "objective/entropy": float(entropy_per_row.mean()),
        "ppo/mean_non_score_reward": float(masked_mean(non_score, mask, reduce=all_reduce_sum)),
        "ppo/mean_scores": float(all_scores.mean()),
        "ppo/std_scores": float(all_scores.std()) if all_scores.numel() > 1 else float("nan"),
        "tokens/queries_len_mean": float(query_lens.mean()),
        "tokens/queries_len_std": float(query_lens.std()) if query_lens.numel() > 1 else float("nan"),
        "tokens/queries_dist": _numpy(query_lens),
        "tokens/responses_len_mean": float(response_lens.mean()),
        "tokens/responses_len_std": float(response_lens.std()) if response_lens.numel() > 1 else float("nan"),
        "tokens/responses_dist": _numpy(response_lens),
    }
    for name, value in minibatch.items():
        if name != "policy/ratio_mean":
            stats[f"ppo/{name}"] = value
    stats["ppo/policy/advantages"] = _numpy(gather_ragged(torch.cat(update.advantages)))
    stats["ppo/policy/ratio"] = _numpy(gather_ragged(torch.cat(update.ratios)))
    returns_var = minibatch["returns/var"]
    stats["ppo/val/var_explained"] = 1 - minibatch["val/error"] / returns_var if returns_var else float("nan")
    stats["ppo/learning_rate"] = float(learning_rate)
    return stats, float(mean_kl)
