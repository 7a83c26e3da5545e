"""Optimizers, schedules and the one gradient step every update function takes: torch.optim and
``clip_grad_norm_``. (The fast path has its own Adam and RMSprop, ``fast/optim.py``, which save the
same state_dicts.)"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from rlcode.errors import TrainingDiverged


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter], name: str, learning_rate: float, eps: float
) -> torch.optim.Optimizer:
    """Adam, or RMSprop with alpha=0.99 as SB3's A2C uses."""
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=learning_rate, alpha=0.99, eps=eps)
    return torch.optim.Adam(parameters, lr=learning_rate, eps=eps)


def scheduled(value: float, schedule: str, progress_remaining: float) -> float:
    """``value`` under a schedule; progress_remaining goes 1 -> 0 over training (SB3's convention)."""
    if schedule == "linear":
        return value * max(progress_remaining, 0.0)
    return value


def set_learning_rate(optimizer: Any, learning_rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


def gradient_step(
    parameters: list[torch.nn.Parameter], optimizer: Any, loss: torch.Tensor, max_grad_norm: float | None
) -> torch.Tensor:
    """Backward, optional global-norm clip, step; refuses a non-finite loss before any weight moves.
    Returns the gradient norm before clipping."""
    if not bool(torch.isfinite(loss)):
        raise TrainingDiverged(
            f"the loss is {float(loss)}; no weights were changed. Lower learning_rate, enable "
            "normalize_observations/normalize_rewards, or check the environment's rewards for inf/nan."
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm if max_grad_norm is not None else float("inf"))
    optimizer.step()
    return norm
