"""Sweeps: statistics against naive loops, errors before work, backends agree, failures kept, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlcode.cli.app import main
from rlcode.configs import ConfigError
from rlcode.statistics import iqm
from rlcode.sweeps.sweeps import bootstrap_ci, build_configs, run_sweep, summarise, trials_from_configs

TINY = {"episodes": 300, "eval_episodes": 20, "log_points": 2}  # qlearning on FrozenLake: well under a second


def naive_iqm(values: list[float]) -> float:
    ordered = sorted(values)
    cut = len(ordered) // 4
    middle = ordered[cut : len(ordered) - cut]
    return sum(middle) / len(middle)


def deterministic_result(record: dict) -> dict:
    """A trial's result without wall-clock entries, which differ between any two runs."""
    timing = ("time", "second", "elapsed", "fps", "per_s")
    return {k: v for k, v in record["result"].items() if k != "run_dir" and not any(w in k for w in timing)}


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 11])
def test_iqm_matches_naive_trimmed_mean(n: int) -> None:
    values = np.random.default_rng(n).normal(size=n).tolist()
    assert iqm(np.array(values)) == pytest.approx(naive_iqm(values))


def test_bootstrap_ci_is_reproducible_and_brackets_the_iqm() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 100.0]
    low, high = bootstrap_ci(values)
    assert (low, high) == bootstrap_ci(values)
    assert low <= naive_iqm(values) <= high
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_summary_groups_seeds_and_counts_failures() -> None:
    records = [
        {
            "group": "lr=1",
            "params": {"lr": 1, "seed": s},
            "status": "ok",
            "result": {"eval": {"mean_return": s}},
        }
        for s in range(4)
    ] + [{"group": "lr=2", "params": {"lr": 2, "seed": 0}, "status": "error", "error": "boom"}]
    first, second = summarise(records, "eval/mean_return")
    assert (first["ok"], first["failed"], first["mean"], first["iqm"]) == (4, 0, 1.5, 1.5)
    assert (second["ok"], second["failed"]) == (0, 1) and np.isnan(second["mean"])


def test_grid_values_are_coerced_and_trials_named_by_grid_point() -> None:
    configs, keys = build_configs(
        "qlearning", "FrozenLake-v1", 2, {"learning_rate": ["0.1", "0.2"]}, {"episodes": "50"}
    )
    assert [(c.learning_rate, c.seed, c.episodes) for c in configs] == [
        (0.1, 0, 50),
        (0.1, 1, 50),
        (0.2, 0, 50),
        (0.2, 1, 50),
    ]
    names = [t.name for t in trials_from_configs(configs, keys)]
    assert names[0] == "learning_rate=0.1__seed=0" and len(set(names)) == 4


@pytest.mark.parametrize(
    ("grid", "overrides", "message"),
    [
        ({"learnin_rate": ["0.1"]}, {}, "unknown key"),
        ({}, {"episodes": "many"}, "episodes"),
        ({"seed": ["1", "2"]}, {}, "seeds"),
    ],
)
def test_bad_keys_and_values_fail_before_anything_runs(
    tmp_path: Path, grid: dict, overrides: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_sweep("qlearning", "FrozenLake-v1", 2, grid, overrides, out_dir=tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def test_cli_reports_unknown_grid_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "qlearning", "--grid", "no_such_field=1,2", "--out", str(tmp_path / "s")])
    assert code == 2 and "no_such_field" in capsys.readouterr().err


def test_ray_backend_without_ray_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'rlcode\[ray\]'"):
        run_sweep("qlearning", "FrozenLake-v1", 1, overrides=TINY, backend="ray", out_dir=tmp_path / "s")
    code = main(["sweep", "qlearning", "--seeds", "1", "--backend", "ray", "--out", str(tmp_path / "s")])
    assert code == 2 and "rlcode[ray]" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("serial")
    return run_sweep(
        "qlearning",
        "FrozenLake-v1",
        2,
        {"learning_rate": [0.1, 0.3]},
        TINY,
        backend="serial",
        out_dir=out,
        quiet=True,
    )


def test_sweep_writes_run_dirs_results_and_summary(serial_sweep) -> None:
    out = serial_sweep.out_dir
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["status"] == "ok" for line in lines)
    for record in serial_sweep.records:
        assert (Path(record["run_dir"]) / "trial.json").is_file()
        assert Path(record["run_dir"]).parent == out / "trials"
    assert [row["group"] for row in serial_sweep.summary] == ["learning_rate=0.1", "learning_rate=0.3"]
    assert all(row["ok"] == 2 and np.isfinite(row["iqm"]) for row in serial_sweep.summary)
    assert serial_sweep.metric is not None
    assert json.loads((out / "summary.json").read_text())["rows"][0]["ok"] == 2


def test_local_pool_gives_the_serial_results(serial_sweep, tmp_path: Path) -> None:
    local = run_sweep(
        "qlearning",
        "FrozenLake-v1",
        2,
        {"learning_rate": [0.1, 0.3]},
        TINY,
        backend="local",
        workers=2,
        out_dir=tmp_path / "local",
        quiet=True,
    )
    assert [deterministic_result(r) for r in local.records] == [
        deterministic_result(r) for r in serial_sweep.records
    ]


@pytest.mark.timeout(300)
def test_ray_backend_gives_the_serial_results(serial_sweep, tmp_path: Path) -> None:
    # Ray is in the test extra (~50 s to install, ~15 s here), so CI runs this; skipped only without Ray.
    pytest.importorskip("ray.tune", reason="Ray is optional: pip install 'rlcode[ray]'")
    ray_sweep = run_sweep(
        "qlearning",
        "FrozenLake-v1",
        2,
        {"learning_rate": [0.1, 0.3]},
        TINY,
        backend="ray",
        workers=2,
        out_dir=tmp_path / "ray",
        quiet=True,
    )
    assert [r["status"] for r in ray_sweep.records] == ["ok"] * 4
    assert [deterministic_result(r) for r in ray_sweep.records] == [
        deterministic_result(r) for r in serial_sweep.records
    ]


def test_failing_trial_is_reported_and_the_others_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "sweep",
        "qlearning",
        "--seeds",
        "2",
        "--grid",
        "env=FrozenLake-v1,NoSuchEnv-v0",
        "--workers",
        "2",
        "--out",
        str(tmp_path / "s"),
        "--quiet",
    ] + [f"--set={k}={v}" for k, v in TINY.items()]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "NoSuchEnv" in printed and "failed" in printed
    records = [json.loads(line) for line in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    status = {r["trial"]: r["status"] for r in records}
    assert status == {
        "env=FrozenLake-v1__seed=0": "ok",
        "env=FrozenLake-v1__seed=1": "ok",
        "env=NoSuchEnv-v0__seed=0": "error",
        "env=NoSuchEnv-v0__seed=1": "error",
    }
    failed = next(r for r in records if r["status"] == "error")
    assert "NoSuchEnv" in failed["error"] and "Traceback" in failed["traceback"]


@pytest.mark.parametrize("backend", ["serial", "local"])
def test_interrupted_sweep_resumes_and_skips_finished_trials(tmp_path: Path, backend: str) -> None:
    out = tmp_path / "s"
    overrides = TINY | {"episodes": 50_000}  # slow enough to interrupt between trials
    command = [sys.executable, "-m", "rlcode", "sweep", "qlearning", "--seeds", "8", "--backend", backend,
               "--workers", "2", "--out", str(out)] + [f"--set={k}={v}" for k, v in overrides.items()]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=os.environ | {"PYTHONUNBUFFERED": "1"}, start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if results.exists() and len(results.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    stderr = process.communicate(timeout=60)[1].decode()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    logged = {json.loads(line)["trial"] for line in results.read_text().splitlines()}
    # A worker can finish a trial (its trial.json) in the moment between Ctrl-C and the driver logging it;
    # the resume counts it as finished and adds its line then. So "finished" is what the trial folders say.
    finished = {}
    for path in (out / "trials").glob("*/trial.json"):
        record = json.loads(path.read_text())
        if record["status"] == "ok":
            finished[record["trial"]] = record
    assert logged <= set(finished) and 2 <= len(logged) and len(finished) < 8
    modified = {name: (out / "trials" / name / "trial.json").stat().st_mtime_ns for name in finished}

    resumed = run_sweep("qlearning", None, 8, None, overrides, backend=backend, workers=2, out_dir=out, quiet=True)
    assert resumed.skipped == len(finished)
    assert [r["status"] for r in resumed.records] == ["ok"] * 8
    assert len(results.read_text().splitlines()) == 8
    assert {name: (out / "trials" / name / "trial.json").stat().st_mtime_ns for name in finished} == modified
    assert all(
        resumed.records[i]["result"] == finished[r]["result"]
        for i, r in enumerate(t["trial"] for t in resumed.records)
        if r in finished
    )


def test_zero_workers_is_refused_from_python_too(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        run_sweep("qlearning", "FrozenLake-v1", 1, None, TINY, backend="serial", workers=0, out_dir=tmp_path)
    assert not (tmp_path / "results.jsonl").exists()


def test_rerun_of_a_cut_short_trial_replaces_only_rlcodes_files(tmp_path: Path) -> None:
    """A trial re-run starts from scratch in its folder, but a file the user put there stays."""
    from rlcode.sweeps.backends import run_trial

    trial = trials_from_configs(build_configs("qlearning", "FrozenLake-v1", 1, None, TINY)[0])[0]
    folder = tmp_path / "trials" / trial.name
    assert run_trial(trial, folder)["status"] == "ok"
    (folder / "notes.txt").write_text("mine")
    first = json.loads((folder / ".rlcode-run.json").read_text())["run_id"]
    assert run_trial(trial, folder)["status"] == "ok"
    assert (folder / "notes.txt").read_text() == "mine"
    assert json.loads((folder / ".rlcode-run.json").read_text())["run_id"] != first
