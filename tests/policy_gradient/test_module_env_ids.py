"""Policy-gradient runs on a ``module:EnvId`` env: training, final evaluation, save, evaluate, video."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlcode.cli.app import main

DATA = Path(__file__).parents[1] / "data"  # rlcode_test_envs.py registers RlcodeCorridor-v0 on import
CORRIDOR = "rlcode_test_envs:RlcodeCorridor-v0"
TINY = ["--num-envs", "2", "--num-steps", "16", "--total-timesteps", "64", "--eval-episodes", "2"]


@pytest.fixture
def custom_envs(monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))
    monkeypatch.delitem(sys.modules, "rlcode_test_envs", raising=False)


@pytest.mark.parametrize("algorithm", ["reinforce", "a2c", "ppo"])
@pytest.mark.parametrize("vector_mode", ["auto", "sync"])
def test_train_evaluate_and_video(tmp_path, capsys, custom_envs, algorithm, vector_mode):
    run_dir = tmp_path / "run"
    ppo_flags = ["--minibatch-size", "16"] if algorithm == "ppo" else []
    assert main(["train", algorithm, "--env", CORRIDOR, "--vector-mode", vector_mode, "--run-dir", str(run_dir),
                 "--quiet", *TINY, *ppo_flags]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["env"] == CORRIDOR and 0.0 <= trained["mean_return"] <= 1.0  # the final evaluation ran
    assert (run_dir / "checkpoint" / "state.json").exists()
    assert main(["evaluate", str(run_dir), "--episodes", "2", "--video", str(tmp_path / "corridor.gif")]) == 0
    assert "deterministic return" in capsys.readouterr().out
    assert (tmp_path / "corridor.gif").stat().st_size > 0


def test_evaluate_in_a_fresh_process_imports_the_module(tmp_path, custom_envs):
    """The checkpoint keeps the id as written, so a new process (no module imported yet) resolves it again."""
    run_dir = tmp_path / "run"
    assert main(["train", "ppo", "--env", CORRIDOR, "--minibatch-size", "16", "--run-dir", str(run_dir),
                 "--quiet", *TINY]) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DATA), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "rlcode", "evaluate", str(run_dir), "--episodes", "2"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"ppo on {CORRIDOR}" in done.stdout
