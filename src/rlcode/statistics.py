"""Statistics over seeds, shared by sweeps (IQM and its interval) and learning-curve plots (bands).

One percentile bootstrap serves both: resample the seeds with replacement, apply the statistic to each
resample, take the percentiles. Unlike a t-interval it stays inside the seeds' range, so a band never
leaves what the metric can reach (a return above 500 on CartPole); a fixed generator makes tables and
figures reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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
