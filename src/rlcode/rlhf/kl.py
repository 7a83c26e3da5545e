"""KL penalties between policy and reference, and the controllers of the KL coefficient β."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def kl_penalty(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token KL estimate from sampled-token log-probs (TRL 0.11 ``_kl_penalty``).

    "kl": log π − log π_ref; "abs": its absolute value; "mse": ½ of its square. For "full" pass the
    full log-softmax rows [..., V] instead: Σ_v π(v)·(log π(v) − log π_ref(v)).
    """
    if kind == "kl":
        return log_probs - ref_log_probs
    if kind == "abs":
        return (log_probs - ref_log_probs).abs()
    if kind == "mse":
        return 0.5 * (log_probs - ref_log_probs).square()
    if kind == "full":  # TRL: F.kl_div(ref, logp, log_target=True).sum(-1)
        return torch.nn.functional.kl_div(ref_log_probs, log_probs, log_target=True, reduction="none").sum(-1)
    raise ValueError(f"unknown kl_penalty {kind!r}; use one of 'kl', 'abs', 'mse', 'full'.")


class FixedKLController:
    """β stays at its initial value."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon) (Ziegler et al. 2019, section 2.2).

    Computed in float32 like TRL 0.11, whose KL statistic is a numpy float32 (so β becomes one too);
    ``value`` holds that float32 exactly as a Python float.
    """

    def __init__(self, kl_coef: float, target: float, horizon: float) -> None:
        super().__init__(kl_coef)
        self.target = target
        self.horizon = horizon

    def update(self, current: float, n_steps: int) -> None:
        error = np.clip(np.float32(current) / self.target - 1, -0.2, 0.2)
        multiplier = 1 + error * n_steps / self.horizon
        self.value = float(np.float32(self.value) * multiplier)
