"""The command line as a user meets it: help, errors before work, quiet JSON, TensorBoard, the tour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlcode.algorithms import ALGORITHMS
from rlcode.cli.app import build_parser, main


def test_help_lists_every_command_and_every_config_field(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for command in ("train", "evaluate", "optimum", "plot", "sweep", "rlhf-demo", "tour"):
        assert command in top
    parser = build_parser()
    for name, algo in ALGORITHMS.items():
        with pytest.raises(SystemExit):
            parser.parse_args(["train", name, "--help"])
        text = capsys.readouterr().out
        for field in dataclasses.fields(algo.load("config")):
            assert "--" + field.name.replace("_", "-") in text, (name, field.name)


def test_unknown_config_key_fails_before_any_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("episodes = 10\nlearning_rat = 0.1\n")
    run_dir = tmp_path / "run"
    assert main(["train", "qlearning", "--config", str(config), "--run-dir", str(run_dir)]) == 2
    assert "unknown key(s) ['learning_rat']" in capsys.readouterr().err
    assert not run_dir.exists()


def test_evaluate_on_a_directory_without_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_quiet_prints_json_and_tensorboard_writes_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    assert main(["train", "qlearning", "--episodes", "2000", "--quiet", "--tensorboard", "--run-dir", str(run_dir)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["algorithm"] == "qlearning" and result["episodes"] == 2000
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_tour_reaches_every_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tour", "--out", str(tmp_path), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert table.count("reached") == 3 and "missed" not in table
    for run in ("qlearning-frozenlake", "ppo-cartpole", "rlhf-demo"):
        assert (tmp_path / run).is_dir()
