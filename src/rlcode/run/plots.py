"""PNG figures of run directories: learning curves across seeds, and each tier's own figures.

Runs are grouped by environment and algorithm (read from ``checkpoint/config.json`` and
``state.json``); each environment gets one figure with, per algorithm, the mean curve over seeds
and a 95 % bootstrap confidence band of that mean (seeds resampled, on a common step grid).
A tier can add figures of one run (``Algorithm.figures`` in the registry: the tabular tier draws
FrozenLake policies and values in ``rlcode.tabular.figures``); this module imports no tier.
matplotlib runs with the Agg backend (no display).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rlcode.algorithms import ALGORITHMS
from rlcode.errors import RunDataError, short_repr
from rlcode.extras import require
from rlcode.run.metrics import EPISODE_RETURN
from rlcode.statistics import percentile_bootstrap

# Used when the asked metric is missing; runs that log it (the tabular tier) plot the exact value of
# their greedy policy first: it is exact, not the noisy ε-greedy training return.
EXACT_VALUE = "value/exact_value"
FALLBACK_METRICS = (EXACT_VALUE, "eval/mean_return")
GRID_POINTS = 200
BOOTSTRAP_RESAMPLES = 2000
SEED_KEYS = ("seed",)  # config keys that tell seeds apart; runs equal in all others are one curve


@dataclass(frozen=True)
class Run:
    """What the plots need to know about one run directory."""

    path: Path
    algorithm: str
    env: str
    config: dict[str, Any]
    state: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list, compare=False)  # metrics.jsonl, read once


def load_pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or MissingExtra naming the plots extra."""
    matplotlib = require("matplotlib", "plots", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_run(run_dir: str | Path) -> Run:
    """Algorithm, env, config and state of a run directory written by `rlcode train`."""
    from rlcode.run.checkpoints import CheckpointError, checkpoint_path, find_checkpoint

    path = Path(run_dir)
    if checkpoint_path(path) == path and (path / "state.json").exists():
        path = path.parent  # given the checkpoint folder itself
    try:
        checkpoint = find_checkpoint(run_dir)  # the last complete one, also after a kill mid-save
    except (FileNotFoundError, CheckpointError):
        raise CheckpointError(
            f"{str(run_dir)!r} is not a finished run directory (no checkpoint/state.json and config.json); "
            "pass directories written by `rlcode train`."
        ) from None
    state = _json_object(checkpoint / "state.json")  # junk or truncated files are named by _json_object
    config = _json_object(checkpoint / "config.json")
    env = config.get("env_id") or config.get("env") or "unknown-env"
    return Run(path, str(state.get("algorithm", "unknown")), str(env), config, state)


def _json_object(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file as a dict; a truncated or edited one is named, not a JSONDecodeError."""
    from rlcode.run.checkpoints import CheckpointError

    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is not valid JSON ({error}); it was truncated or edited. "
            "Restore it from a backup or retrain."
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"checkpoint file {str(path)!r} holds {short_repr(data)}, not a JSON object; restore it or retrain."
        )
    return data


def read_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl``; a cut-off last line (a killed run) is skipped with a warning.

    Only the last line can be half-written by a kill; a bad line before it means the file was edited,
    and plotting around it would hide that.
    """
    path = Path(run_dir) / "metrics.jsonl"
    lines = [(number, line) for number, line in enumerate(path.read_bytes().split(b"\n"), 1) if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line.decode("utf-8"))
            if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
                raise ValueError("not a record with a step")
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if index == len(lines) - 1:
                print(f"rlcode: warning: {path} line {number} is cut off (the run was killed while writing "
                      "it?); plotting the lines before it.", file=sys.stderr)
                break
            raise RunDataError(
                f"{path} line {number} is not a metrics record ({error}); fix or delete that line."
            ) from None
        records.append(record)
    return records


def bootstrap_band(
    stacked: np.ndarray, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over seeds, at every point: stacked [seeds, points]."""
    return percentile_bootstrap(stacked, lambda resampled: resampled.mean(axis=1), confidence, resamples, seed)


def curve(records: list[dict[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records that hold a finite ``metric``."""
    points = [(r["step"], r[metric]) for r in records
              if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    if not points:
        return np.zeros(0), np.zeros(0)
    steps, values = np.asarray(points, dtype=float).T
    return steps, values


def mean_and_band(
    curves: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every seed interpolated onto the steps all of them cover: (grid, mean, band low, band high)."""
    if len(curves) == 1:
        steps, values = curves[0]
        return steps, values, values, values
    low, high = max(s[0] for s, _ in curves), min(s[-1] for s, _ in curves)
    if high <= low:
        raise ValueError("the runs' step ranges do not overlap; plot them separately.")
    grid = np.linspace(low, high, GRID_POINTS)
    stacked = np.stack([np.interp(grid, steps, values) for steps, values in curves])  # [seeds, points]
    band_low, band_high = bootstrap_band(stacked)
    return grid, stacked.mean(axis=0), band_low, band_high


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _metric_for(runs: list[Run], metric: str) -> str:
    """The default metric, or for runs that did not log it the first fallback they all logged.

    A metric the user named is never swapped for another: a typo must not plot something else.
    """
    records = [run.records for run in runs]
    candidates: tuple[str, ...] = (metric,)
    if metric == EPISODE_RETURN:
        candidates = (EXACT_VALUE, metric, *FALLBACK_METRICS)  # exact_value only where every run logged it
    for candidate in candidates:
        if all(curve(r, candidate)[0].size for r in records):
            return candidate
    logged = sorted(set.intersection(*(_metric_names(r) for r in records)))
    raise RunDataError(
        f"runs {short_repr([str(r.path) for r in runs])} did not log {short_repr(metric)}; pass --metric with "
        f"one they all logged: {logged}."
    )


def _metric_names(records: list[dict[str, Any]]) -> set[str]:
    return {key for record in records for key, value in record.items()
            if key != "step" and isinstance(value, (int, float))}


def group_runs(runs: list[Run]) -> dict[str, dict[str, list[Run]]]:
    """env -> label -> runs that differ only in their seed; the label names what sets groups apart."""
    by_setting: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        setting = json.dumps({k: v for k, v in run.config.items() if k not in SEED_KEYS}, sort_keys=True)
        by_setting[(run.env, run.algorithm, setting)].append(run)
    grouped: dict[str, dict[str, list[Run]]] = defaultdict(dict)
    for (env, algorithm, _), group in sorted(by_setting.items(), key=lambda item: item[0]):
        siblings = [g[0].config for (e, a, _), g in by_setting.items() if (e, a) == (env, algorithm)]
        varying = sorted(
            k
            for k in group[0].config
            if k not in SEED_KEYS and len({json.dumps(c.get(k)) for c in siblings}) > 1
        )
        label = algorithm + "".join(f" {k}={group[0].config[k]}" for k in varying[:3])
        grouped[env][label] = group
    return grouped


def plot_learning_curves(runs: list[Run], out_dir: Path, metric: str = EPISODE_RETURN) -> list[Path]:
    """One PNG per env: per algorithm and setting, every seed thin and the mean with its 95 % band."""
    plt = load_pyplot()
    from matplotlib.ticker import EngFormatter

    written = []
    for env, by_label in sorted(group_runs(runs).items()):
        figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=120)
        shown_metrics = set()
        for index, (name, group) in enumerate(by_label.items()):
            group_metric = _metric_for(group, metric)
            shown_metrics.add(group_metric)
            colour = f"C{index}"
            curves = [curve(run.records, group_metric) for run in group]
            for seed_index, (steps, values) in enumerate(curves):
                seed_label = f"{name}: each seed" if seed_index == 0 and len(curves) > 1 else None
                axes.plot(steps, values, color=colour, alpha=0.35, linewidth=0.8, label=seed_label)
            grid, mean, band_low, band_high = mean_and_band(curves)
            label = f"{name} ({len(group)} seed{'s' if len(group) > 1 else ''})"
            axes.plot(grid, mean, color=colour, linewidth=2, label=label)
            if len(group) > 1:
                axes.fill_between(
                    grid,
                    band_low,
                    band_high,
                    color=colour,
                    alpha=0.2,
                    linewidth=0,
                    label=f"{name}: 95% bootstrap CI of the mean",
                )
            optimum = _optimum(group)
            if optimum is not None and group_metric == EXACT_VALUE:
                axes.axhline(
                    optimum, color=colour, linestyle="--", linewidth=1, label="best stationary policy"
                )
        axes.set_title(f"{env}: learning curves")
        axes.set_xlabel("environment steps")
        axes.xaxis.set_major_formatter(EngFormatter(sep=""))
        axes.set_ylabel(", ".join(sorted(shown_metrics)))
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize=8)
        figure.tight_layout()
        metric_names = "+".join(name.replace("/", "-") for name in sorted(shown_metrics))
        path = out_dir / f"{slug(env)}-{slug(metric_names)}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def _optimum(group: list[Run]) -> float | None:
    values = [run.state.get("result", {}).get("optimum_stationary") for run in group]
    return float(values[0]) if values and values[0] is not None else None


def plot_runs(
    run_dirs: list[str | Path], out_dir: str | Path | None = None, metric: str = EPISODE_RETURN
) -> list[Path]:
    """Write every figure for ``run_dirs`` into ``out_dir`` (default: the first run's parent); return paths."""
    if not run_dirs:
        raise ValueError("pass at least one run directory.")
    runs = [read_run(run_dir) for run_dir in run_dirs]  # raises before anything is drawn
    for run in runs:
        if not (run.path / "metrics.jsonl").is_file():
            raise FileNotFoundError(
                f"{str(run.path)!r} has no metrics.jsonl; it was not written by `rlcode train`."
            )
    runs = [replace(run, records=read_records(run.path)) for run in runs]
    for run in runs:  # every named metric is checked before the output folder appears
        _metric_for([run], metric)
    load_pyplot()  # a missing plots extra fails before the output folder appears
    out = Path(out_dir) if out_dir is not None else runs[0].path.parent / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = plot_learning_curves(runs, out, metric)
    for run in runs:  # the figures a run's tier draws of it (FrozenLake policies for the tabular tier)
        algo = ALGORITHMS.get(run.algorithm)
        if algo is not None and algo.figures:
            written += algo.load("figures")(run, out)
    return written
