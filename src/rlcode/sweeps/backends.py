"""Where sweep trials run: in this process, on a local process pool, or as Ray Tune trials.

Every backend maps the same ``run_trial`` over the pending trials and hands each finished record to
``on_record`` as it arrives, so the driver can save it at once. ``run_trial`` never raises: a failing
``train`` becomes a record with ``status="error"`` and its traceback, and the other trials go on.
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlcode.extras import missing_extra, require
from rlcode.run.atomic import write_json_atomic

BACKENDS = ("serial", "local", "ray")
OnRecord = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Trial:
    """One run of ``train``: its directory-safe name, its grid point without the seed, and its config."""

    name: str
    group: str
    params: dict[str, Any]
    config: Any


def jsonable(value: Any) -> Any:
    """Plain JSON types for a ``train`` result (numpy/torch scalars and arrays, paths, tuples)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # numpy and torch scalars/arrays
        return jsonable(value.tolist())
    return str(value)


def _single_thread() -> None:
    """One torch thread per trial: trials run side by side, and the thread count changes float sums."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _worker_start() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the pool
    _single_thread()


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued trials and kill the running ones (a resumed sweep runs them again)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def run_trial(trial: Trial, run_dir: str | Path) -> dict[str, Any]:
    """Train one config into a fresh ``run_dir``; the record (also written to ``run_dir/trial.json``)."""
    from rlcode.algorithms import train
    from rlcode.configs import config_to_dict

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "trial.json").unlink(missing_ok=True)  # the sweep's own record of an earlier, cut-short try
    record: dict[str, Any] = {
        "trial": trial.name,
        "group": trial.group,
        "params": jsonable(trial.params),
        "config": jsonable(config_to_dict(trial.config)),
        "run_dir": str(run_dir),
    }
    start = time.perf_counter()
    try:
        # a trial cut short earlier starts again from scratch, replacing only what rlcode wrote there
        result = train(trial.config, run_dir=run_dir, quiet=True, overwrite=True)
        record |= {"status": "ok", "result": jsonable(result)}
    except Exception as error:
        record |= {"status": "error", "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    record["seconds"] = time.perf_counter() - start
    write_json_atomic(run_dir / "trial.json", record)
    return record


def crashed_record(trial: Trial, run_dir: Path, reason: str) -> dict[str, Any]:
    """The record of a trial whose worker process died before it could write one."""
    from rlcode.configs import config_to_dict

    return {
        "trial": trial.name,
        "group": trial.group,
        "params": jsonable(trial.params),
        "config": jsonable(config_to_dict(trial.config)),
        "run_dir": str(run_dir),
        "status": "error",
        "error": reason,
        "traceback": "",
        "seconds": float("nan"),
    }


def run_serial(trials: Sequence[Trial], run_dirs: Sequence[Path], workers: int, on_record: OnRecord) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for trial, run_dir in zip(trials, run_dirs):
            on_record(run_trial(trial, run_dir))
    finally:
        torch.set_num_threads(threads)


def run_local(trials: Sequence[Trial], run_dirs: Sequence[Path], workers: int, on_record: OnRecord) -> None:
    """A spawn-context process pool: fresh interpreters, no forked torch or env state."""
    import multiprocessing

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start)
    try:
        futures = {pool.submit(run_trial, t, d): (t, d) for t, d in zip(trials, run_dirs)}
        for future in as_completed(futures):
            try:
                record = future.result()
            except Exception as error:  # BrokenProcessPool: a worker was killed (out of memory, signal)
                trial, run_dir = futures[future]
                record = crashed_record(trial, run_dir, f"worker process died: {type(error).__name__}: {error}")
            on_record(record)
    except BaseException:  # KeyboardInterrupt, or an error while saving a record
        _stop_now(pool)
        raise
    pool.shutdown()


def require_ray() -> None:
    """Raise ``MissingExtra`` (one line naming ``pip install 'rlcode[ray]'``) unless Ray Tune imports."""
    require("ray", "ray")
    try:
        from ray import tune  # noqa: F401
    except ImportError:  # ray without the dependencies of its [tune] extra
        raise missing_extra("ray", "ray", package="Ray Tune (ray[tune])") from None


def _ray_trainable(params: dict[str, Any], trials: Sequence[Trial], run_dirs: Sequence[Path]) -> dict[str, Any]:
    _single_thread()
    index = params["trial_index"]
    record = run_trial(trials[index], run_dirs[index])
    return {"record_json": json.dumps(record)}


def run_ray(trials: Sequence[Trial], run_dirs: Sequence[Path], workers: int, on_record: OnRecord) -> None:
    """One Ray Tune trial per sweep trial (1 CPU each); joins a cluster when RAY_ADDRESS is set."""
    require_ray()
    import ray
    from ray import tune

    class Forward(tune.Callback):  # records reach the driver as trials finish, not only at the end
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if "record_json" in result:
                on_record(json.loads(result["record_json"]))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            index = trial.config["trial_index"]
            on_record(crashed_record(pending[index], run_dirs[index], f"Ray trial failed: {trial.error_file}"))

    pending = list(trials)
    started_here = not ray.is_initialized()
    if started_here:
        local = "RAY_ADDRESS" not in os.environ
        ray.init(
            num_cpus=workers if local else None,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
        )
    storage = Path(run_dirs[0]).resolve().parent.parent / "ray"
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_ray_trainable, trials=pending, run_dirs=list(run_dirs)),
                                {"cpu": 1}),
            param_space={"trial_index": tune.grid_search(list(range(len(pending))))},
            tune_config=tune.TuneConfig(max_concurrent_trials=workers),
            run_config=tune.RunConfig(
                storage_path=str(storage), name=time.strftime("tune-%Y%m%d-%H%M%S"), verbose=0, callbacks=[Forward()],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()


RUNNERS: dict[str, Callable[[Sequence[Trial], Sequence[Path], int, OnRecord], None]] = {
    "serial": run_serial,
    "local": run_local,
    "ray": run_ray,
}
