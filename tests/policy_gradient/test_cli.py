"""`rlcode train ppo|a2c|reinforce` and `rlcode evaluate RUN_DIR`, end to end, and errors before work."""

from __future__ import annotations

import json

import pytest

from rlcode.cli.app import main


@pytest.mark.parametrize("algorithm", ["reinforce", "a2c", "ppo"])
def test_train_then_evaluate(tmp_path, capsys, algorithm):
    run_dir = tmp_path / algorithm
    code = main(["train", algorithm, "--env", "CartPole-v1", "--total-timesteps", "2000", "--num-envs", "2",
                 "--num-steps", "16", "--eval-episodes", "2", "--run-dir", str(run_dir), "--quiet"]
                + (["--minibatch-size", "16", "--num-epochs", "2"] if algorithm == "ppo" else []))
    assert code == 0
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert state["algorithm"] == algorithm and state["timesteps"] >= 2000
    assert (run_dir / "metrics.jsonl").exists()
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", "3"]) == 0
    assert "deterministic return" in capsys.readouterr().out
    assert main(["evaluate", str(run_dir), "--episodes", "2", "--stochastic", "--seed", "1"]) == 0
    assert "stochastic return" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--minibatch-size", "100"], "minibatch_size=100 does not divide"),
        (["--log-std-init", "-1"], "applies to continuous (Box) actions only"),
        (["--gamma", "2"], "gamma=2.0"),
        (["--env", "FrozenLake-v1"], "Box (vector) observation space"),
    ],
)
def test_errors_before_any_env_step(tmp_path, capsys, flags, message):
    assert main(["train", "ppo", "--run-dir", str(tmp_path / "r"), "--quiet", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoint").exists()
