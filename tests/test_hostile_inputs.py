"""Hostile inputs through the real CLI: each is refused with one line (exit 2) naming the field or
file and the fix, never a traceback, and leaves every file that existed before byte-identical.

Most cases call ``rlcode.cli.app.main`` in this process (a subprocess costs 1-2 s of torch import);
``SUBPROCESS_CASES`` run through ``python -m rlcode`` to prove what a user's terminal shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlcode.cli.app import main

PPO = ["train", "ppo", "--total-timesteps", "64", "--num-envs", "2", "--num-steps", "32", "--minibatch-size", "32",
       "--num-epochs", "1", "--eval-episodes", "2", "--quiet"]
QL = ["train", "qlearning", "--episodes", "200", "--log-points", "2", "--eval-episodes", "10", "--quiet"]
YAML_BOMB = (
    "CartPole-v1:\n  n_envs: [&a [l,l,l,l,l,l,l,l,l], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], "
    "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], "
    "[*e,*e,*e,*e,*e,*e,*e,*e,*e]]\n"
)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One finished tiny Q-learning run and one PPO run, copied by the cases that need them."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, argv in (("qlearning", QL), ("ppo", PPO)):
        assert main([*argv, "--run-dir", str(root / name)]) == 0
        made[name] = root / name
    return made


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def copy_run(tmp: Path, runs: dict[str, Path], name: str) -> Path:
    return Path(shutil.copytree(runs[name], tmp / name))


def edit_state(run: Path, change: Callable[[dict], None]) -> None:
    """Edit state.json as a user with a text editor would (the file hashes left as they are)."""
    path = run / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state, indent=2, sort_keys=True))


def rehash(run: Path, name: str) -> None:
    """Update state.json's hashes to match ``name``'s edited bytes (a deliberate forgery)."""
    from rlcode.run.checkpoints import STATE_DIGEST_KEY, state_digest

    digest = hashlib.sha256((run / "checkpoint" / name).read_bytes()).hexdigest()

    def forge(state: dict) -> None:
        state["sha256"][name] = digest
        state[STATE_DIGEST_KEY] = state_digest(state)

    edit_state(run, forge)


def absurd_header(run: Path) -> None:
    path = run / "checkpoint" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", 2**62)
    path.write_bytes(bytes(data))
    rehash(run, "model.safetensors")


def cut_file(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, dict[str, Path]], list[str]]  # makes files under tmp, returns argv
    needles: tuple[str, ...]  # what the output must say (the field or file, and the fix)
    code: int = 2


def flags(*argv: str) -> Callable[[Path, dict[str, Path]], list[str]]:
    return lambda tmp, runs: [*argv, "--run-dir", str(tmp / "run")] if argv[0] == "train" else list(argv)


def with_config(base: list[str], name: str, data: str | bytes) -> Callable[[Path, dict[str, Path]], list[str]]:
    return lambda tmp, runs: [*base, "--config", str(write(tmp / name, data)), "--run-dir", str(tmp / "run")]


def on_run(name: str, prepare: Callable[[Path], None], *argv: str) -> Callable[[Path, dict[str, Path]], list[str]]:
    def build(tmp: Path, runs: dict[str, Path]) -> list[str]:
        run = copy_run(tmp, runs, name)
        prepare(run)
        return [arg.replace("RUN", str(run)) for arg in argv]

    return build


def _no_change(run: Path) -> None:
    pass


INT_CASES = [
    Case("num-envs 2.9", flags(*PPO, "--num-envs", "2.9"), ("num_envs=", "whole number")),
    Case("num-steps 31.5", flags(*PPO, "--num-steps", "31.5"), ("num_steps=", "whole number")),
    Case("total-timesteps 64.5", flags(*PPO, "--total-timesteps", "64.5"), ("total_timesteps=", "whole number")),
    Case("seed 1.5", flags(*PPO, "--seed", "1.5"), ("seed=", "whole number")),
    Case("hidden-sizes 64.5,64", flags(*PPO, "--hidden-sizes", "64.5,64"), ("hidden_sizes=", "whole number")),
    Case("episodes 700.9", flags(*QL, "--episodes", "700.9"), ("episodes=", "whole number")),
    Case("max-episode-steps 10.5", flags(*QL, "--max-episode-steps", "10.5"), ("max_episode_steps=",)),
    Case("seed nan", flags(*QL, "--seed", "nan"), ("seed=",)),
    Case("seed 1e400", flags(*QL, "--seed", "1e400"), ("seed=",)),
    Case("toml num_envs = 2.9", with_config(PPO[:2], "c.toml", "num_envs = 2.9\n"), ("num_envs=", "c.toml")),
    Case("json num_envs 2.9", with_config(PPO[:2], "c.json", '{"num_envs": 2.9}'), ("num_envs=",)),
    Case("yaml n_envs 2.9", with_config(PPO[:2], "c.yml", "CartPole-v1: {n_envs: 2.9}\n"), ("num_envs=",)),
    Case("toml episodes = 700.9", with_config(QL[:2], "c.toml", "episodes = 700.9\n"), ("episodes=",)),
]
FLOAT_CASES = [
    Case(f"{algo} --{flag} {value}", flags(*base, f"--{flag}", value), (flag.replace("-", "_") + "=", fix))
    for algo, base, flag, value, fix in [
        ("ppo", PPO, "learning-rate", "inf", "finite"),
        ("ppo", PPO, "learning-rate", "1e400", "finite"),
        ("ppo", PPO, "entropy-coef", "inf", "finite"),
        ("ppo", PPO, "value-coef", "inf", "finite"),
        ("ppo", PPO, "optimizer-eps", "inf", "finite"),
        ("ppo", PPO, "clip-range", "inf", "finite"),
        ("ppo", PPO, "max-grad-norm", "inf", "none"),
        ("ppo", PPO, "target-kl", "inf", "none"),
        ("ppo", PPO, "value-clip-range", "inf", "none"),
        ("ppo", PPO, "gae-lambda", "nan", "finite"),
        ("a2c", ["train", "a2c"], "learning-rate", "inf", "finite"),
        ("reinforce", ["train", "reinforce"], "learning-rate", "inf", "finite"),
        ("qlearning", QL, "initial-q", "inf", "finite"),
    ]
]
OPTION_CASES = [
    Case("Taxi --map-size 8", flags(*QL, "--env", "Taxi-v3", "--map-size", "8"), ("map_size=", "FrozenLake")),
    Case("Taxi --no-slippery", flags(*QL, "--env", "Taxi-v3", "--no-slippery"), ("slippery=", "FrozenLake")),
    Case("Taxi --map-desc", flags(*QL, "--env", "Taxi-v3", "--map-desc", "SFFG"), ("map_desc=", "FrozenLake")),
    Case("hidden-sizes 100000,100000", flags(*PPO, "--hidden-sizes", "100000,100000"),
         ("hidden_sizes=", "GiB", "--hidden-sizes 64,64")),
    Case("eval-episodes 1e9", flags(*PPO, "--eval-episodes", "1000000000"), ("eval_episodes=", "at most")),
    Case("module:EnvId not importable", flags(*PPO, "--env-id", "no_such_module_xyz:Thing-v0"),
         ("no_such_module_xyz",)),
    Case("env id of 100k characters", flags(*QL, "--env", "x" * 100_000), ("characters",)),
    Case("sweep --workers 0", flags("sweep", "qlearning", "--workers", "0"), ("--workers 0", ">= 1")),
    Case("sweep --workers -1", flags("sweep", "qlearning", "--workers", "-1"), ("--workers -1", ">= 1")),
]
FILE_CASES = [
    Case("--config not UTF-8 (toml)", with_config(QL[:2], "c.toml", b"episodes = 10 # \xff\xfe\n"),
         ("c.toml", "UTF-8")),
    Case("--config not UTF-8 (json)", with_config(QL[:2], "c.json", b'{"episodes": "\xff"}'), ("c.json", "UTF-8")),
    Case("--config not UTF-8 (yaml)", with_config(PPO[:2], "c.yaml", b"CartPole-v1: {n_envs: \xff}\n"),
         ("c.yaml", "UTF-8")),
    Case("--config is a directory", lambda tmp, runs: [*QL, "--config", str(tmp)], ("is a directory",)),
    Case("--config missing", lambda tmp, runs: [*QL, "--config", str(tmp / "nope.toml")],
         ("nope.toml", "does not exist")),
    Case("--config YAML alias bomb", with_config(PPO[:2], "bomb.yml", YAML_BOMB), ("bomb.yml", "aliases")),
    Case("--run-dir is a file", lambda tmp, runs: [*QL, "--run-dir", str(write(tmp / "f", "x"))],
         ("f'", "is a file", "another --run-dir")),
    Case("--run-dir below a file", lambda tmp, runs: [*QL, "--run-dir", str(write(tmp / "f", "x") / "run")],
         ("f/", "part of the path is a file")),
    Case("rlhf-demo --model missing", lambda tmp, runs: ["rlhf-demo", "--model", str(tmp / "missing-model")],
         ("--model", "missing-model", "does not exist")),
]
RUN_CASES = [
    Case("evaluate --episodes 1e9", on_run("ppo", _no_change, "evaluate", "RUN", "--episodes", "1000000000"),
         ("--episodes", "1000000")),
    Case("evaluate --episodes 0", on_run("qlearning", _no_change, "evaluate", "RUN", "--episodes", "0"),
         ("--episodes",)),
    Case("evaluate --episodes 700.9", on_run("qlearning", _no_change, "evaluate", "RUN", "--episodes", "700.9"),
         ("--episodes", "invalid int")),
    Case("evaluate a file", lambda tmp, runs: ["evaluate", str(write(tmp / "f", "x"))],
         ("Not a directory", "f/checkpoint")),
    Case("state.json normaliser edited",
         on_run("ppo", lambda run: edit_state(run, lambda s: s["normalizer"]["observation_stats"].__setitem__(
             "mean", [5.0, 0.0, 0.0, 0.0])), "evaluate", "RUN"), ("state.json", "state_sha256", "Restore")),
    Case("state.json optimizer edited",
         on_run("ppo", lambda run: edit_state(run, lambda s: s["optimizer"]["param_groups"][0].__setitem__(
             "lr", 1.0)), "evaluate", "RUN"), ("state.json", "corrupt")),
    Case("state.json truncated", on_run("qlearning", lambda run: cut_file(run / "checkpoint" / "state.json", 40),
                                        "evaluate", "RUN"), ("state.json",)),
    Case("safetensors header absurd (hash updated)", on_run("ppo", absurd_header, "evaluate", "RUN"),
         ("model.safetensors", "not a valid safetensors file")),
    Case("safetensors truncated (hash updated)",
         on_run("qlearning", lambda run: (cut_file(run / "checkpoint" / "q_table.safetensors", 30),
                                          rehash(run, "q_table.safetensors")), "evaluate", "RUN"),
         ("q_table.safetensors", "not a valid safetensors file")),
    Case("plot: config.json junk", on_run("ppo", lambda run: write(run / "checkpoint" / "config.json", "{junk"),
                                          "plot", "RUN"), ("config.json", "not valid JSON")),
    Case("plot: config.json not an object", on_run("ppo", lambda run: write(run / "checkpoint" / "config.json", "[1]"),
                                                   "plot", "RUN"), ("config.json", "not a JSON object")),
    Case("plot: state.json truncated", on_run("ppo", lambda run: cut_file(run / "checkpoint" / "state.json", 50),
                                              "plot", "RUN"), ("state.json", "truncated")),
    Case("plot: bad line in the middle of metrics.jsonl",
         on_run("ppo", lambda run: write(run / "metrics.jsonl", '{"step": 1, "x": 1}\n{oops\n{"step": 2, "x": 2}\n'),
                "plot", "RUN", "--out", "RUN/plots"), ("metrics.jsonl line 2", "fix or delete")),
    Case("plot --out is a file", on_run("ppo", lambda run: write(run / "f.png", "x"), "plot", "RUN", "--out",
                                        "RUN/f.png"), ("f.png", "a file is in the way")),
    Case("plot --metric typo", on_run("ppo", _no_change, "plot", "RUN", "--metric", "eval/mean_retrun"),
         ("eval/mean_retrun", "eval/mean_return")),
    Case("plot a missing run", lambda tmp, runs: ["plot", str(tmp / "nope")], ("nope", "rlcode train")),
]
CASES = INT_CASES + FLOAT_CASES + OPTION_CASES + FILE_CASES + RUN_CASES


def snapshot(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def check_refusal(code: int, out: str, err: str, case: Case) -> None:
    assert code == case.code, (code, out, err)
    assert "Traceback" not in err
    assert len(err) < 2000, f"a {len(err)}-character message"
    for needle in case.needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input_is_one_line_and_changes_no_file(
    case: Case, tmp_path: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a default run or sweep directory would land here, not in the repository
    argv = case.build(tmp_path, runs)
    before = snapshot(tmp_path)
    code, out, err = run_cli(argv, capsys)
    check_refusal(code, out, err, case)
    if err.startswith("rlcode: error:"):
        assert err.count("\n") == 1, err
    after = snapshot(tmp_path)
    assert {path: after.get(path) for path in before} == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_run_dir_that_is_not_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, out, err = run_cli([*QL, "--run-dir", str(locked / "run")], capsys)
    finally:
        locked.chmod(0o700)
    check_refusal(code, out, err, Case("not writable", flags("x"), ("locked", "permission denied")))


def test_plot_skips_a_half_written_last_line_with_a_warning(
    tmp_path: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(tmp_path, runs, "ppo")
    metrics = run / "metrics.jsonl"
    whole = metrics.read_bytes()
    metrics.write_bytes(whole + b'{"step": 999, "rollout/episode_ret')  # a kill while writing a line
    code, out, err = run_cli(["plot", str(run), "--out", str(tmp_path / "plots")], capsys)
    assert code == 0 and "Traceback" not in err
    assert "warning" in err and "metrics.jsonl line" in err and "cut off" in err
    assert list((tmp_path / "plots").glob("*.png"))
    assert metrics.read_bytes() == whole + b'{"step": 999, "rollout/episode_ret'


@pytest.mark.parametrize("algorithm", ["qlearning", "ppo"])
def test_evaluate_quiet_prints_the_json_result(
    algorithm: str, tmp_path: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(tmp_path, runs, algorithm)
    code, out, err = run_cli(["evaluate", str(run), "--quiet", "--episodes", "3"], capsys)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["algorithm"] == algorithm and result["episodes"] == 3 and "mean_return" in result


def test_evaluation_in_batches_matches_one_vector_env() -> None:
    """Episodes past EVAL_BATCH run in further vector envs, each episode seeded as in one big vector env.

    (CartPole's own numpy vector env draws all its envs from one seed, so there only counts up to
    EVAL_BATCH, one batch, are unchanged; sync vector envs give equal returns for any count.)
    """
    import numpy as np

    from rlcode.policy_gradient import train

    def act(observations: np.ndarray) -> np.ndarray:
        return (observations[:, 2] > 0).astype(np.int64)

    whole = train.evaluate_policy(act, "CartPole-v1", 7, seed=3, vector_mode="sync")
    original = train.EVAL_BATCH
    train.EVAL_BATCH = 3
    try:
        batched = train.evaluate_policy(act, "CartPole-v1", 7, seed=3, vector_mode="sync")
    finally:
        train.EVAL_BATCH = original
    np.testing.assert_array_equal(whole, batched)


def test_nan_stop_is_one_line_exit_3_and_keeps_the_last_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "ppo", "--total-timesteps", "192", "--num-envs", "2", "--num-steps", "32", "--minibatch-size",
            "64", "--num-epochs", "1", "--eval-episodes", "2", "--learning-rate", "1e30", "--save-every", "1",
            "--run-dir", str(run), "--quiet"]
    code, out, err = run_cli(argv, capsys)
    assert code == 3 and "Traceback" not in err and err.count("\n") == 1
    assert "gradient norm is nan" in err and "Lower learning_rate" in err
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["updates"] == 1  # the last good checkpoint, loadable as it is
    from rlcode.run.checkpoints import load_checkpoint

    load_checkpoint(run)


def test_checkpoint_without_state_digest_loads_with_a_warning(tmp_path: Path, runs: dict[str, Path]) -> None:
    """Runs saved before state_sha256 existed stay usable; a checkpoint with one must match it."""
    from rlcode.run.checkpoints import STATE_DIGEST_KEY, load_checkpoint

    run = copy_run(tmp_path, runs, "qlearning")
    edit_state(run, lambda state: state.pop(STATE_DIGEST_KEY))
    with pytest.warns(RuntimeWarning, match=STATE_DIGEST_KEY):
        load_checkpoint(run)


def test_config_file_whole_float_is_accepted_but_not_truncated(tmp_path: Path) -> None:
    """3.0 and "1e5" are whole numbers: refusing them would break zoo files (n_timesteps: !!float 1e5)."""
    from rlcode.configs import config_from_dict
    from rlcode.policy_gradient.config import PPOConfig

    config = config_from_dict(PPOConfig, {"num_envs": 8.0, "total_timesteps": "1e5"})
    assert (config.num_envs, config.total_timesteps) == (8, 100_000)


SUBPROCESS_CASES = ["num-envs 2.9", "ppo --learning-rate inf", "Taxi --map-size 8", "--config is a directory",
                    "--config not UTF-8 (toml)", "--run-dir is a file", "--config YAML alias bomb",
                    "evaluate --episodes 1e9", "plot: state.json truncated", "rlhf-demo --model missing"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_hostile_input_in_a_terminal(name: str, tmp_path: Path, runs: dict[str, Path]) -> None:
    (case,) = [case for case in CASES if case.name == name]
    argv = case.build(tmp_path, runs)
    before = snapshot(tmp_path)
    done = subprocess.run([sys.executable, "-m", "rlcode", *argv], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    check_refusal(done.returncode, done.stdout, done.stderr, case)
    assert done.stderr.startswith("rlcode: error:") and done.stderr.count("\n") == 1
    after = snapshot(tmp_path)
    assert {path: after.get(path) for path in before} == before
