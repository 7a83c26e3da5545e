"""Tabular runs on a ``module:EnvId`` env with a toy-text transition table: train, evaluate, video."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rlcode.cli.app import main
from rlcode.tabular.config import QLearningConfig
from rlcode.tabular.train import train

DATA = Path(__file__).parents[1] / "data"  # rlcode_test_envs.py registers RlcodeTabularCorridor-v0 on import
CORRIDOR = "rlcode_test_envs:RlcodeTabularCorridor-v0"


@pytest.fixture
def custom_envs(monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))
    monkeypatch.delitem(sys.modules, "rlcode_test_envs", raising=False)


def test_qlearning_solves_a_module_env_with_its_table(tmp_path, custom_envs):
    config = QLearningConfig(env=CORRIDOR, episodes=300, eval_episodes=10, log_points=2)
    result = train(config, run_dir=tmp_path / "run", quiet=True)
    assert result["exact_value"] == pytest.approx(1.0)  # the planner read the module env's P table
    assert result["mean_return"] == pytest.approx(1.0)


@pytest.mark.parametrize("algorithm", ["sarsa", "expected-sarsa"])
def test_cli_train_evaluate_and_video(tmp_path, capsys, custom_envs, algorithm):
    run_dir = tmp_path / "run"
    assert main(["train", algorithm, "--env", CORRIDOR, "--episodes", "300", "--eval-episodes", "10",
                 "--log-points", "2", "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", "5", "--video", str(tmp_path / "corridor.gif")]) == 0
    assert (tmp_path / "corridor.gif").stat().st_size > 0
