"""`rlcode train/evaluate/optimum` end to end, and the checkpoint of a tabular run."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from rlcode.cli.app import main
from rlcode.run.checkpoints import CheckpointError, load_checkpoint
from rlcode.tabular.config import QLearningConfig, SarsaConfig
from rlcode.tabular.train import evaluate, load_run, train


def test_train_evaluate_round_trip_through_the_cli(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "qlearning", "--episodes", "20000", "--seed", "4", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    for row in ("optimum (best stationary policy, exact)", "learned greedy policy (exact value)",
                "gap to optimum", "episodes", "wall time", "updates/s", "0.7402"):
        assert row in out
    assert main(["evaluate", str(run_dir), "--episodes", "300", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "this policy (exact value)" in out and "sampled success rate" in out

    config, q = load_run(run_dir)
    assert config == QLearningConfig(episodes=20000, seed=4)
    state = load_checkpoint(run_dir).state
    assert state["algorithm"] == "qlearning" and state["episodes"] == 20000 and state["updates"] > 20000
    assert len(state["rng"]["td_stream"]) == 4
    assert (run_dir / "metrics.jsonl").exists()
    assert q.shape == (16, 4) and np.isfinite(q).all()


def test_checkpoint_round_trip_and_exact_values_agree(tmp_path):
    result = train(SarsaConfig(env="FrozenLake-v1", map_desc="SFFF,FHFH,FFFH,HFFG", episodes=5000,
                               slippery=False, eval_episodes=10), run_dir=tmp_path, quiet=True)
    config, q = load_run(tmp_path)
    assert isinstance(config, SarsaConfig) and config.map_desc == "SFFF,FHFH,FFFH,HFFG"
    evaluated = evaluate(tmp_path, episodes=20, quiet=True)
    assert evaluated["exact_value"] == result["exact_value"] == 1.0
    assert evaluated["mean_return"] == 1.0  # gymnasium's own env.step agrees with the exact value


def test_tampered_q_table_is_reported(tmp_path):
    train(QLearningConfig(episodes=100, eval_episodes=1), run_dir=tmp_path, quiet=True)
    path = tmp_path / "checkpoint" / "q_table.safetensors"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="q_table.safetensors"):
        load_run(tmp_path)


def test_optimum_command(capsys):
    assert main(["optimum", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["horizon"] == 100
    assert summary["infinite_horizon"] == pytest.approx(14 / 17, abs=1e-9)
    assert summary["stationary"] == pytest.approx(0.7402, abs=5e-5)
    assert summary["time_dependent"] == pytest.approx(0.7442, abs=5e-5)
    assert main(["optimum", "--map-size", "8", "--no-slippery", "--max-episode-steps", "200"]) == 0
    out = capsys.readouterr().out
    assert "200-step limit" in out and "1.0000" in out


def test_bad_flags_fail_before_any_work(tmp_path, capsys):
    assert main(["train", "qlearning", "--gamma", "2", "--run-dir", str(tmp_path / "r")]) == 2
    assert "QLearningConfig.gamma=2.0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_help_documents_every_flag():
    help_text = subprocess.run([sys.executable, "-m", "rlcode", "train", "qlearning", "--help"],
                               capture_output=True, text=True, check=True).stdout
    for field in dataclasses.fields(QLearningConfig):
        assert "--" + field.name.replace("_", "-") in help_text
    assert "--no-slippery" in help_text
    optimum_help = subprocess.run([sys.executable, "-m", "rlcode", "optimum", "--help"],
                                  capture_output=True, text=True, check=True).stdout
    for flag in ("--env", "--map-size", "--slippery", "--no-slippery", "--map-desc", "--max-episode-steps",
                 "--gamma", "--json"):
        assert flag in optimum_help


def test_console_script_trains_end_to_end(tmp_path):
    run = subprocess.run([sys.executable, "-m", "rlcode", "train", "expected-sarsa", "--env", "CliffWalking-v1",
                          "--episodes", "500", "--run-dir", str(tmp_path)],
                         capture_output=True, text=True, check=True)
    assert "-13.0000" in run.stdout and "gap to optimum" in run.stdout
