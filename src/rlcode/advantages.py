"""Returns and advantages along time, as pure functions of ``[batch, time]`` tensors.

Bootstrapping is the caller's decision, made explicit: ``next_values[:, t]`` is V(s_{t+1}) — zero
after a true terminal state, V(final observation) after a time-limit truncation — and
``continues[:, t]`` is 0 where an episode ended at step t (terminated *or* truncated), so the
recursions never run across an episode boundary.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", torch.Tensor, np.ndarray)


def gae(
    rewards: Array,
    values: Array,
    next_values: Array,
    continues: Array,
    gamma: float,
    lam: float,
) -> tuple[Array, Array]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16); returns (advantages, returns).

    Takes torch tensors or numpy arrays (fast/fused_numpy.py's A2C step), and returns the same kind."""
    deltas = rewards + gamma * next_values - values  # [B, T]
    decay = (gamma * lam) * continues  # [B, T]
    advantages: Any = np.empty_like(deltas) if isinstance(deltas, np.ndarray) else torch.empty_like(deltas)
    d, c, a = _loop_views(deltas, decay, advantages)
    running = 0.0
    for t in reversed(range(deltas.shape[1])):  # A_t = δ_t + γλ·c_t·A_{t+1}
        running = d[:, t] + c[:, t] * running
        a[:, t] = running
    return advantages, advantages + values


def _loop_views(*tensors: Any) -> tuple[Any, ...]:
    """The tensors themselves, or numpy views of them (writes go through) when they live on the CPU
    without autograd: a loop over time does a few ops on [B] vectors per step, and such an op costs
    about 1 µs in numpy against about 5 µs in torch. Numpy arrays pass through."""
    if all(isinstance(t, np.ndarray) for t in tensors):
        return tensors
    if all(t.device.type == "cpu" and not t.requires_grad for t in tensors):
        return tuple(t.numpy() for t in tensors)
    return tensors


def discounted_returns(
    rewards: torch.Tensor,
    continues: torch.Tensor,
    gamma: float,
    bootstrap: torch.Tensor | None = None,
) -> torch.Tensor:
    """G_t = r_t + γ·G_{t+1} within an episode.

    ``bootstrap[:, t]`` is added as γ·bootstrap where an episode was cut at t (a truncation, or the
    end of the rollout), e.g. V(final observation); pass None for pure Monte-Carlo returns.
    """
    returns = torch.empty_like(rewards)  # [B, T]
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        tail = continues[:, t] * running
        if bootstrap is not None:
            tail = tail + (1 - continues[:, t]) * bootstrap[:, t]
        running = rewards[:, t] + gamma * tail
        returns[:, t] = running
    return returns
