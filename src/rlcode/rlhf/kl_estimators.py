"""Per-token estimators of KL(π ‖ π_ref) from sampled tokens, and the exact KL over the vocabulary.

With y ~ π and r = π_ref(y) / π(y) (Schulman, "Approximating KL divergence", 2020):

- k1 = −log r = log π(y) − log π_ref(y): unbiased, high variance, negative for some y;
- k2 = ½ (log r)²: biased (E_π[k2] = ½ E_π[(log r)²], which agrees with KL only to second order
  in log r), low variance, never negative;
- k3 = (r − 1) − log r: unbiased (E_π[r] = 1), never negative, lower variance than k1 when π and
  π_ref are close. TRL 1.16's ``GRPOTrainer.compute_loss`` adds β·k3 to the per-token loss; its
  ``RLOOTrainer`` subtracts β·Σ_t k1 from the sequence's reward.

Gradients, with the token drawn from π_old and the estimator differentiated at π = π_old, as the
expectation over y (tests/rlhf/test_kl_estimators.py checks each by enumerating the vocabulary):

- k2 used as a loss term has expected gradient ∇ KL(π ‖ π_ref), exactly;
- k3 used as a loss term has expected gradient ∇ KL(π_ref ‖ π), the *reverse* KL, not ∇ KL(π ‖ π_ref);
- k1 used as a loss term has expected gradient 0 (E_π[∇ log π] = 0): it does nothing;
- k1 used as a reward (the REINFORCE term k1·∇ log π, TRL's RLOO) has expected gradient ∇ KL(π ‖ π_ref);
- ratio·k1 and ratio·k3 with ratio = π/π_old (TRL's ``use_bias_correction_kl``) have expected
  gradient ∇ KL(π ‖ π_ref), because E_{π_old}[ratio·k] = E_π[k] = KL for any π.
"""

from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]


def kl_estimate(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, kind: KLEstimator = "k3") -> torch.Tensor:
    """Elementwise estimate of KL(π ‖ π_ref) from log π(y) and log π_ref(y) of tokens y sampled from π."""
    if log_probs.shape != ref_log_probs.shape:
        raise ValueError(
            f"kl_estimate got log_probs {tuple(log_probs.shape)} and ref_log_probs {tuple(ref_log_probs.shape)}; "
            "pass the two models' log-probabilities of the same tokens."
        )
    log_ratio = ref_log_probs - log_probs  # log r, r = π_ref / π
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        # the order of TRL 1.16's compute_loss: exp(ref − logp) − (ref − logp) − 1
        return torch.exp(log_ratio) - log_ratio - 1
    raise ValueError(f"unknown KL estimator {kind!r}; choose 'k1', 'k2' or 'k3'.")


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) ‖ softmax(ref_logits)) = Σ_v p_v (log p_v − log q_v) per row: [..., V] -> [...]."""
    if logits.shape != ref_logits.shape:
        raise ValueError(
            f"exact_kl got logits {tuple(logits.shape)} and ref_logits {tuple(ref_logits.shape)}; "
            "both must be [..., V] over the same vocabulary."
        )
    log_p = torch.log_softmax(logits, dim=-1)                            # [..., V]
    log_q = torch.log_softmax(ref_logits, dim=-1)                        # [..., V]
    # xlogy-style: a token with p_v = 0 contributes 0 even where log q_v = -inf
    return torch.where(log_p.exp() > 0, log_p.exp() * (log_p - log_q), 0.0).sum(dim=-1)
