"""Run directories belong to the user (issue #13): refusals, --overwrite, --resume, unique default dirs, sweeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlcode.cli.app import main
from rlcode.run import run_dirs
from rlcode.run.run_dirs import MARKER, RunDirError, check_run_dir, create_default_run_dir

PPO = ["train", "ppo", "--env", "CartPole-v1", "--total-timesteps", "256", "--num-envs", "2", "--num-steps", "16",
       "--minibatch-size", "16", "--num-epochs", "1", "--eval-episodes", "2", "--quiet"]
QLEARNING = ["train", "qlearning", "--episodes", "200", "--eval-episodes", "10", "--log-points", "2", "--quiet"]
USER_FILES = {"notes.txt": b"my notes\n", "data/keep.csv": b"a,b\n1,2\n"}


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes (what 'byte-identical afterwards' compares)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def add_user_files(directory: Path) -> None:
    for name, data in USER_FILES.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI, expect exit 2 and a one-line error (no traceback); return the line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlcode: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def metric_steps(run_dir: Path) -> list[float]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("command", [PPO, QLEARNING], ids=["ppo", "qlearning"])
def test_earlier_finished_run_is_refused_then_overwritten_keeping_user_files(tmp_path, capsys, command):
    run = tmp_path / "run"
    assert main([*command, "--run-dir", str(run)]) == 0
    marker = json.loads((run / MARKER).read_text())
    assert marker["finished"] and set(marker["files"]) >= {"checkpoint", "metrics.jsonl", "README.md"}
    add_user_files(run)
    before = snapshot(run)

    err = refused(capsys, [*command, "--run-dir", str(run)])
    assert "holds an earlier finished" in err and "--resume" in err and "--overwrite" in err
    assert snapshot(run) == before

    assert main([*command, "--run-dir", str(run), "--overwrite"]) == 0
    after = snapshot(run)
    assert {name: after[name] for name in USER_FILES} == USER_FILES  # the user's files, byte for byte
    assert json.loads((run / MARKER).read_text())["run_id"] != marker["run_id"]
    steps = metric_steps(run)
    assert steps == sorted(steps), "the old run's metrics were replaced, not appended to"


@pytest.mark.parametrize("foreign", ["state.json", "checkpoint/state.json", "checkpoint/weights.bin", "README.md",
                                     "metrics.jsonl"])
@pytest.mark.parametrize("flag", [[], ["--overwrite"]], ids=["no-flag", "overwrite"])
def test_directory_with_files_rlcode_did_not_write(tmp_path, capsys, foreign, flag):
    run = tmp_path / "project"
    add_user_files(run)
    (run / foreign).parent.mkdir(parents=True, exist_ok=True)
    (run / foreign).write_text('{"sha256": {}, "my": "state"}' if foreign.endswith(".json") else "# My project\n")
    before = snapshot(run)
    if foreign == "state.json":  # a state.json beside the user's files is not a checkpoint: the run goes ahead
        assert main([*PPO, "--run-dir", str(run), *flag]) == 0
        assert {k: v for k, v in snapshot(run).items() if k in before} == before
        assert (run / "checkpoint" / "state.json").is_file()
        return
    err = refused(capsys, [*PPO, "--run-dir", str(run), *flag])
    assert repr(foreign.split("/")[0]) in err and "another --run-dir" in err
    assert snapshot(run) == before


def test_run_dir_named_checkpoint_holding_user_files_is_left_alone(tmp_path):
    run = tmp_path / "checkpoint"  # the name that used to be taken for a checkpoint and swapped away
    add_user_files(run)
    (run / "state.json").write_text('{"mine": true}')
    before = snapshot(run)
    assert main([*PPO, "--run-dir", str(run)]) == 0
    assert {k: v for k, v in snapshot(run).items() if k in before} == before
    assert main(["evaluate", str(run), "--episodes", "1", "--quiet"]) == 0  # reads run/checkpoint, not the user's


def test_run_dir_dot_never_replaces_the_project_readme(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("# My project\n")
    (tmp_path / "main.py").write_text("print('hi')\n")
    before = snapshot(tmp_path)
    err = refused(capsys, [*PPO, "--run-dir", "."])
    assert "'README.md'" in err and "another --run-dir" in err
    refused(capsys, [*PPO, "--run-dir", ".", "--overwrite"])
    assert snapshot(tmp_path) == before
    (tmp_path / "README.md").unlink()  # only unrelated files: a run may start there, and leaves them alone
    assert main([*PPO, "--run-dir", "."]) == 0
    assert (tmp_path / "main.py").read_text() == "print('hi')\n" and (tmp_path / "checkpoint").is_dir()


def test_run_from_before_markers_counts_as_an_earlier_run(tmp_path, capsys):
    run = tmp_path / "old"
    assert main([*PPO, "--run-dir", str(run)]) == 0
    (run / MARKER).unlink()  # what an rlcode without markers left behind
    assert "earlier rlcode version" in refused(capsys, [*PPO, "--run-dir", str(run)])
    assert main([*PPO, "--run-dir", str(run), "--overwrite"]) == 0


def test_resume_refusals_are_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert "holds no checkpoint" in refused(capsys, ["train", "ppo", "--resume", str(tmp_path)])
    assert main([*PPO, "--run-dir", str(run)]) == 0
    assert "drop --learning-rate" in refused(capsys, ["train", "ppo", "--resume", str(run), "--learning-rate", "0.1"])
    assert "rlcode train ppo --resume" in refused(capsys, ["train", "a2c", "--resume", str(run)])
    assert "drop --run-dir" in refused(capsys, ["train", "ppo", "--resume", str(run), "--run-dir", str(tmp_path)])
    tabular = tmp_path / "tabular"
    assert main([*QLEARNING, "--run-dir", str(tabular)]) == 0
    assert "cannot be resumed" in refused(capsys, ["train", "qlearning", "--resume", str(tabular)])


def test_resume_needs_a_run(tmp_path):
    with pytest.raises(RunDirError, match="no rlcode run to resume"):
        check_run_dir(tmp_path, ["checkpoint"], "resume")


def test_default_run_dirs_differ_within_one_second(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dirs.time, "strftime", lambda fmt, *a: "20261201-120000")
    suffixes = iter(["aaaaaa", "aaaaaa", "bbbbbb"])  # the second start draws the first's suffix: it retries
    monkeypatch.setattr(run_dirs.secrets, "token_hex", lambda n: next(suffixes))
    first = create_default_run_dir("ppo-CartPole-v1-seed0", tmp_path)
    second = create_default_run_dir("ppo-CartPole-v1-seed0", tmp_path)
    assert first != second and first.is_dir() and second.is_dir()


_MAKE_DIRS = (
    "import sys\n"
    "from rlcode.run.run_dirs import create_default_run_dir\n"
    "print('\\n'.join(str(create_default_run_dir('ppo-CartPole-v1-seed0', sys.argv[1])) for _ in range(20)))\n"
)


def test_default_run_dirs_from_two_processes_at_once_differ(tmp_path):
    processes = [subprocess.Popen([sys.executable, "-c", _MAKE_DIRS, str(tmp_path)], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
    made = [line for process in processes for line in process.communicate(timeout=60)[0].split()]
    assert len(made) == 40 and len(set(made)) == 40 and all(os.path.isdir(path) for path in made)


def test_second_sweep_into_the_same_out_keeps_the_first_records(tmp_path):
    from rlcode.sweeps.sweeps import run_sweep

    tiny = {"episodes": 300, "eval_episodes": 20, "log_points": 2}
    run_sweep("qlearning", "FrozenLake-v1", [0, 1], None, tiny, backend="serial", out_dir=tmp_path, quiet=True)
    first = (tmp_path / "results.jsonl").read_text()
    run_sweep("qlearning", "FrozenLake-v1", [2], None, tiny, backend="serial", out_dir=tmp_path, quiet=True)
    lines = (tmp_path / "results.jsonl").read_text()
    assert lines.startswith(first)
    assert [json.loads(line)["trial"] for line in lines.splitlines()] == ["seed=0", "seed=1", "seed=2"]
    again = run_sweep("qlearning", "FrozenLake-v1", [0, 1], None, tiny, backend="serial", out_dir=tmp_path,
                      quiet=True)
    assert again.skipped == 2 and (tmp_path / "results.jsonl").read_text() == lines  # nothing lost or doubled


def test_default_runs_save_periodically(tmp_path, monkeypatch):
    from rlcode.policy_gradient.config import PPOConfig
    from rlcode.policy_gradient.train import PolicyGradientRun, train

    saves: list[int] = []
    real_save = PolicyGradientRun.save
    monkeypatch.setattr(PolicyGradientRun, "save", lambda self, *a, **k: saves.append(self.updates) or real_save(
        self, *a, **k))
    config = PPOConfig(num_envs=2, num_steps=16, minibatch_size=16, num_epochs=1, total_timesteps=32 * 4,
                       eval_episodes=1)
    train(config, run_dir=tmp_path / "every", quiet=True, save_seconds=0.0)  # save_every=0: by elapsed time
    assert saves == [1, 2, 3, 4]  # three periodic saves, then the final one
    saves.clear()
    train(config, run_dir=tmp_path / "end", quiet=True, save_seconds=None)
    assert saves == [4]


def test_library_writers_refuse_user_files_too(tmp_path):
    """Direct calls (no run-dir check before them) still never replace what rlcode did not write."""
    from rlcode.run.checkpoints import Checkpoint, CheckpointError, save_checkpoint
    from rlcode.run.model_card import write_model_card

    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "weights.bin").write_bytes(b"mine")
    with pytest.raises(CheckpointError, match="not an rlcode checkpoint"):
        save_checkpoint(tmp_path, Checkpoint(config={}))
    (tmp_path / "README.md").write_text("# mine\n")
    with pytest.raises(ValueError, match="not an rlcode model card"):
        write_model_card(tmp_path, algorithm="ppo", env_id="CartPole-v1", mean_return=1.0, std_return=0.0, config={})
    assert snapshot(tmp_path) == {"checkpoint/weights.bin": b"mine", "README.md": b"# mine\n"}
