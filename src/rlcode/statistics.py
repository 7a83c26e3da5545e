"""Statistics shared by the tiers: running moments of a stream (the policy-gradient normaliser, the RLHF
score moments) and statistics over seeds (sweeps' IQM and its interval, learning-curve bands).

One percentile bootstrap serves both: resample the seeds with replacement, apply the statistic to each
resample, take the percentiles. Unlike a t-interval it stays inside the seeds' range, so a band never
leaves what the metric can reach (a return above 500 on CartPole); a fixed generator makes tables and
figures reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class RunningMeanStd:
    """Mean and (population) variance of a stream of batches along axis 0, by Chan et al.'s parallel
    update, in float64. ``epsilon`` is the initial count (SB3's VecNormalize uses 1e-4, TRL's score
    moments 1e-24), with mean 0 and variance 1 before any batch."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean: Any = np.zeros(shape, dtype=np.float64)
        self.var: Any = np.ones(shape, dtype=np.float64)
        self.count = epsilon

    def update(self, batch: np.ndarray) -> None:
        batch_mean, batch_var, batch_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def state(self) -> dict[str, Any]:
        return {"mean": np.asarray(self.mean).tolist(), "var": np.asarray(self.var).tolist(), "count": self.count}

    def load(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.var = np.asarray(state["var"], dtype=np.float64)
        self.count = float(state["count"])


def iqm(values: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis: drop the lowest and highest quarter (scipy's trim_mean)."""
    ordered = np.sort(values, axis=-1)
    n = ordered.shape[-1]
    cut = int(0.25 * n)
    return ordered[..., cut : n - cut].mean(axis=-1)


def percentile_bootstrap(
    samples: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], confidence: float = 0.95,
    resamples: int = 10_000, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of ``statistic`` over seeds: ``samples`` is [seeds, ...] and ``statistic`` maps the
    resampled [resamples, seeds, ...] to [resamples, ...] (reducing the seeds axis, 1)."""
    n = samples.shape[0]
    picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # [R, seeds]
    stats = statistic(samples[picks])  # [R, ...]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail], axis=0)
    return low, high
