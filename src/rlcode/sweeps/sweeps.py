"""Many seeds and hyperparameter grids: ``rlcode.algorithms.train`` mapped over a pool of processes.

``run_sweep("ppo", env="CartPole-v1", seeds=5, grid={"learning_rate": [3e-4, 1e-3]})`` builds every
config up front (unknown keys and bad values fail before anything runs), trains each one in its own
run directory ``OUT/trials/NAME`` on the chosen backend (``rlcode.sweeps.backends``), appends each finished
record to ``OUT/results.jsonl`` at once, and summarises every grid point across seeds: mean, IQM
(Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice") and a bootstrap CI of the IQM.
Running the same sweep again into the same directory skips the trials that already finished.
``results.jsonl`` is append-only: a later sweep into the same directory (other seeds, another grid)
adds its records and never drops earlier ones; a trial run again after a failure adds a new record,
and the last record of a trial is its current one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlcode.configs import ConfigError, config_from_dict, config_to_dict, load_config_file
from rlcode.run.atomic import write_json_atomic
from rlcode.statistics import iqm, percentile_bootstrap
from rlcode.sweeps.backends import BACKENDS, RUNNERS, Trial, jsonable, require_ray

METRIC_PREFERENCE = ("eval/mean_return", "mean_return", "eval_mean_return", "final_return", "return")


@dataclass
class SweepResult:
    """Every record of the sweep (finished earlier or now), the per-grid-point summary, and where they are."""

    records: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    metric: str | None
    out_dir: Path
    skipped: int  # trials found finished in out_dir and not run again

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "ok"]


def algorithm_name(config: Any) -> str:
    from rlcode.algorithms import ALGORITHMS

    for algo in ALGORITHMS.values():
        if algo.config == f"{type(config).__module__}:{type(config).__name__}":
            return algo.name
    raise TypeError(f"{type(config).__name__} is not the config of any registered algorithm.")


def _format(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _trial_name(params: Mapping[str, Any]) -> str:
    name = "__".join(f"{key}={_format(value)}" for key, value in params.items())
    return re.sub(r"[^A-Za-z0-9._,=+-]", "_", name)


def trials_from_configs(configs: Sequence[Any], keys: Sequence[str] | None = None) -> list[Trial]:
    """Name each config by the fields that vary across ``configs`` (or by ``keys``), seed last."""
    if not configs:
        raise ValueError("a sweep needs at least one config.")
    dicts = [config_to_dict(c) | {"algorithm": algorithm_name(c)} for c in configs]
    if keys is None:
        ordered = list(dict.fromkeys(k for d in dicts for k in d))
        keys = [k for k in ordered if k != "seed" and any(d.get(k) != dicts[0].get(k) for d in dicts)]
    trials, seen = [], set()
    for config, data in zip(configs, dicts):
        params = {k: data.get(k) for k in keys if k != "seed"} | {"seed": data.get("seed")}
        group = _trial_name({k: v for k, v in params.items() if k != "seed"}) or data["algorithm"]
        name = _trial_name(params)
        if name in seen:
            raise ValueError(f"two configs of the sweep are the same trial {name!r}; remove the duplicate.")
        seen.add(name)
        trials.append(Trial(name=name, group=group, params=params, config=config))
    return trials


def parse_assignment(text: str) -> tuple[str, str]:
    """``"learning_rate=3e-4"`` -> ``("learning_rate", "3e-4")`` (dashes in the key become underscores)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{text!r} is not of the form key=value; write e.g. learning_rate=3e-4.")
    return key.strip().replace("-", "_"), value.strip()


def split_grid_values(cls: type, key: str, text: str) -> list[str]:
    """Grid values are comma-separated; for a list-valued field (``hidden_sizes``) use ``;`` between values."""
    hints = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    is_list = key in hints and re.search(r"\b(tuple|list|Tuple|List)\b", hints[key]) is not None
    return [v.strip() for v in text.split(";" if is_list else ",") if v.strip()]


def build_configs(
    algorithm: str,
    env: str | None = None,
    seeds: int | Sequence[int] = 5,
    grid: Mapping[str, Sequence[Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> tuple[list[Any], list[str]]:
    """Every config of the sweep, built and validated now, and the grid keys that name its trials."""
    from rlcode.algorithms import get_algorithm

    algo = get_algorithm(algorithm)
    cls = algo.load("config")
    fields = {f.name for f in dataclasses.fields(cls)}
    base: dict[str, Any] = dict(load_config_file(config_file, cls, algo.readers())) if config_file else {}
    if env is not None:
        env_field = next((name for name in ("env_id", "env") if name in fields), None)
        if env_field is None:
            raise ConfigError(f"{cls.__name__} has no env_id field; drop --env for {algorithm}.")
        base[env_field] = env
    base |= {k.replace("-", "_"): v for k, v in (overrides or {}).items()}
    grid = {k.replace("-", "_"): list(v) for k, v in (grid or {}).items()}
    if "seed" in grid:
        raise ConfigError("set the seeds with seeds=N or a list (--seeds 5 / --seeds 0,1,2), not in the grid.")
    for key, values in grid.items():
        if not values:
            raise ConfigError(f"grid key {key!r} has no values; give at least one, e.g. {key}=v1,v2.")
    first = int(base.pop("seed", 0))  # --set seed=S starts the seeds at S
    seed_list = list(range(first, first + seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("a sweep needs at least one seed; pass seeds >= 1.")
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        points = [point | {key: value} for point in points for value in values]
    source = f"sweep of {algorithm}"
    configs: list[Any] = [config_from_dict(cls, base | point | {"seed": seed}, source) for point in points for seed in seed_list]
    check_env_ids(configs)
    return configs, list(grid)


def check_env_ids(configs: Sequence[Any]) -> None:
    """Resolve every distinct env id now: a missing module or package fails once, before any worker starts.

    The workers resolve the ids again (importing a ``module:EnvId``'s module), being fresh processes.
    """
    from rlcode.env_ids import resolve_env_id

    ids = (getattr(c, name, None) for c in configs for name in ("env_id", "env"))
    for env_id in dict.fromkeys(i for i in ids if isinstance(i, str)):
        resolve_env_id(env_id)


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the IQM over seeds (fixed generator: the table is reproducible)."""
    low, high = percentile_bootstrap(np.asarray(values, dtype=float), iqm, confidence, resamples, seed)
    return float(low), float(high)


def flatten(result: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, Mapping):
            out |= flatten(value, f"{prefix}{key}/")
        else:
            out[f"{prefix}{key}"] = value
    return out


def choose_metric(records: Sequence[dict[str, Any]], metric: str | None) -> str | None:
    results = [flatten(r["result"]) for r in records if r["status"] == "ok"]
    if metric is not None or not results:
        return metric
    numeric = [k for k, v in results[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return next((k for k in METRIC_PREFERENCE if k in numeric), numeric[0] if numeric else None)


def summarise(records: Sequence[dict[str, Any]], metric: str | None) -> list[dict[str, Any]]:
    """One row per grid point: seeds finished and failed, mean, IQM and its 95% bootstrap CI of ``metric``."""
    rows = []
    for group in dict.fromkeys(r["group"] for r in records):
        members = [r for r in records if r["group"] == group]
        ok = [r for r in members if r["status"] == "ok"]
        values = [float(flatten(r["result"]).get(metric, math.nan)) for r in ok] if metric else []
        values = [v for v in values if math.isfinite(v)]
        row = {"group": group, "params": {k: v for k, v in members[0]["params"].items() if k != "seed"},
               "seeds": len(members), "ok": len(ok), "failed": len(members) - len(ok), "metric": metric}
        if values:
            low, high = bootstrap_ci(values)
            row |= {"mean": float(np.mean(values)), "std": float(np.std(values)), "iqm": float(iqm(np.array(values))),
                    "ci_low": low, "ci_high": high}
        else:
            row |= dict.fromkeys(("mean", "std", "iqm", "ci_low", "ci_high"), math.nan)
        rows.append(row)
    return rows


def print_summary(result: SweepResult) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep: {result.metric or 'no metric'} across seeds ({result.out_dir / 'results.jsonl'})")
    table.add_column("grid point", overflow="fold")
    for column in ("seeds ok", "mean", "IQM", "IQM 95% CI", "failed"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in result.summary:
        point = ", ".join(f"{k}={_format(v)}" for k, v in row["params"].items()) or row["group"]
        ci = f"[{row['ci_low']:.4g}, {row['ci_high']:.4g}]" if row["ok"] else ""
        table.add_row(point, f"{row['ok']}/{row['seeds']}", f"{row['mean']:.4g}", f"{row['iqm']:.4g}", ci,
                      str(row["failed"] or ""))
    console = Console()
    console.print(table)
    errors: dict[str, list[dict[str, Any]]] = {}
    for record in result.failed:
        errors.setdefault(record["error"], []).append(record)
    for error, records in errors.items():  # one line per distinct error, not one per failed seed
        names = ", ".join(r["trial"] for r in records)
        console.print(f"[red]{len(records)} trial(s) failed[/red] ({names}): {error}\n"
                      f"  traceback in {records[0]['run_dir']}/trial.json", highlight=False, soft_wrap=True)


def _finished(trial: Trial, run_dir: Path) -> dict[str, Any] | None:
    """The record of ``trial`` if an earlier run of this sweep finished it; an error if the dir holds another."""
    path = run_dir / "trial.json"
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if record.get("config") != jsonable(config_to_dict(trial.config)):
        raise ValueError(f"{run_dir} holds a trial with a different config than this sweep's {trial.name!r}; "
                         "pass a new output directory (--out) or delete the old one.")
    return record if record.get("status") == "ok" else None  # failed trials run again


def _read_records(path: Path) -> list[dict[str, Any]]:
    """The records of ``results.jsonl`` (a line torn by a kill is skipped)."""
    records = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def sweep(configs: Sequence[Any], backend: str = "local", workers: int | None = None,
          out_dir: str | Path = "runs/sweep", metric: str | None = None, quiet: bool = False,
          keys: Sequence[str] | None = None) -> SweepResult:
    """Train every config on ``backend`` ("serial", "local" process pool, "ray" Tune), one run dir each."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown sweep backend {backend!r}; choose one of {list(BACKENDS)}.")
    if backend == "ray":
        require_ray()
    if workers is not None and workers < 1:  # 0 must not quietly mean "all CPUs"
        raise ValueError(f"workers must be at least 1 (or None for every CPU), got {workers}.")
    workers = workers or os.cpu_count() or 1
    trials = trials_from_configs(configs, keys)
    out_dir = Path(out_dir).resolve()
    run_dirs = [out_dir / "trials" / t.name for t in trials]
    done = {t.name: r for t, d in zip(trials, run_dirs) if (r := _finished(t, d)) is not None}
    pending = [(t, d) for t, d in zip(trials, run_dirs) if t.name not in done]
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.jsonl"
    logged = _read_records(results_path)
    with open(results_path, "a+") as handle:  # earlier records stay; finished trials missing there are added
        if handle.tell() and (handle.seek(handle.tell() - 1), handle.read(1))[1] != "\n":
            handle.write("\n")  # end a line torn by a kill, so the next record starts on its own line
        handle.writelines(json.dumps(done[t.name]) + "\n" for t in trials if t.name in done
                          and done[t.name] not in logged)
    if not quiet:
        resumed = f"; {len(done)} finished earlier, skipped" if done else ""
        print(f"sweep: {len(pending)} trial(s) on backend {backend!r} with {workers} worker(s){resumed}")
    records = dict(done)

    def on_record(record: dict[str, Any]) -> None:
        records[record["trial"]] = record
        with open(results_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if not quiet:
            status = "ok" if record["status"] == "ok" else f"FAILED: {record['error']}"
            print(f"  [{len(records)}/{len(trials)}] {record['trial']} {status} ({record['seconds']:.1f}s)")

    start = time.perf_counter()
    if pending:
        RUNNERS[backend]([t for t, _ in pending], [d for _, d in pending], min(workers, len(pending)), on_record)
    ordered = [records[t.name] for t in trials if t.name in records]
    if len(ordered) < len(trials):  # Ray Tune ends fit() quietly on Ctrl-C; report it as the pool does
        raise KeyboardInterrupt(f"{len(trials) - len(ordered)} trial(s) of the sweep did not finish")
    chosen = choose_metric(ordered, metric)
    result = SweepResult(ordered, summarise(ordered, chosen), chosen, out_dir, skipped=len(done))
    write_json_atomic(out_dir / "summary.json", {"metric": chosen, "backend": backend, "workers": workers,
                                                 "seconds": time.perf_counter() - start, "rows": result.summary})
    return result


def run_sweep(algorithm: str, env: str | None = None, seeds: int | Sequence[int] = 5,
              grid: Mapping[str, Sequence[Any]] | None = None, overrides: Mapping[str, Any] | None = None,
              backend: str = "local", workers: int | None = None, out_dir: str | Path | None = None,
              metric: str | None = None, config_file: str | Path | None = None, quiet: bool = False) -> SweepResult:
    """Seeds x grid of one algorithm; the Python twin of ``rlcode sweep``."""
    configs, keys = build_configs(algorithm, env, seeds, grid, overrides, config_file)
    if out_dir is None:
        out_dir = Path("runs") / _trial_name({"sweep": f"{algorithm}-{env or 'default'}"})
    return sweep(configs, backend, workers, out_dir, metric, quiet, keys=keys)
