"""SIGKILL at every point of a save, and mid-run: evaluate, plot and --resume use the last complete checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rlcode.cli.app import main
from rlcode.run.checkpoints import load_checkpoint

# 1024 steps per update: one metrics record per update, so a killed run has curves to plot
FLAGS = ["--env", "CartPole-v1", "--total-timesteps", str(2 * 512 * 8), "--num-envs", "2", "--num-steps", "512",
         "--minibatch-size", "256", "--num-epochs", "2", "--eval-episodes", "2", "--quiet"]

# The child trains with a save after every update and dies by SIGKILL at STAGE of its third save.
_KILL_SAVE = textwrap.dedent(
    """
    import os, shutil, signal, sys
    import rlcode.run.checkpoints as ck
    from rlcode.cli.app import main

    run_dir, stage, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
    saves = [0]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    real_save, real_json, real_fsync, real_rename, real_rmtree = (
        ck.save_checkpoint, ck._write_json, ck.fsync_path, os.rename, shutil.rmtree)
    renames = [0]

    def armed():
        return saves[0] == 3

    def save_checkpoint(*args, **kwargs):
        saves[0] += 1
        return real_save(*args, **kwargs)

    def write_json(path, data):  # after the temporary checkpoint is written in full, before any fsync
        real_json(path, data)
        if armed() and stage == "written" and path.name == "state.json":
            die()

    def fsync_path(path):  # after the temporary directory itself is fsynced, right before the swap
        real_fsync(path)
        if armed() and stage == "fsynced" and path.name.startswith(".checkpoint.tmp-"):
            die()

    def rename(src, dst):
        real_rename(src, dst)
        if armed():
            renames[0] += 1
            if (stage, renames[0]) in (("first-rename", 1), ("second-rename", 2)):
                die()

    def rmtree(path, *args, **kwargs):  # halfway through deleting the previous checkpoint
        if armed() and stage == "cleanup":
            for child in sorted(os.listdir(path))[:2]:
                os.unlink(os.path.join(path, child))
            die()
        real_rmtree(path, *args, **kwargs)

    ck.save_checkpoint, ck._write_json, ck.fsync_path, ck.os.rename, ck.shutil.rmtree = (
        save_checkpoint, write_json, fsync_path, rename, rmtree)
    import rlcode.policy_gradient.train  # noqa: F401  (binds save_checkpoint lazily, inside save())
    main(["train", "ppo", "--run-dir", run_dir, "--save-every", "1", *flags])
    """
)

# stage -> updates of the checkpoint that readers must find (the kill hits the save after update 3)
STAGES = {"written": 2, "fsynced": 2, "first-rename": 2, "second-rename": 3, "cleanup": 3}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_sigkill_at_every_point_of_a_save(tmp_path: Path, capsys: pytest.CaptureFixture[str], stage: str) -> None:
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    child = subprocess.run([sys.executable, "-c", _KILL_SAVE, str(run), stage, *FLAGS], timeout=120)
    assert child.returncode == -9, "the child should have died mid-save"
    before = {p.name for p in run.iterdir()}
    assert load_checkpoint(run).state["updates"] == STAGES[stage]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--episodes", "2"]) == 0
    printed = capsys.readouterr()
    assert "deterministic return" in printed.out
    if stage == "first-rename":  # checkpoint/ is gone: the previous one is used, and the user told so
        assert "using the last complete checkpoint" in printed.err and ".checkpoint.old-" in printed.err
    assert main(["plot", str(run), "--out", str(tmp_path / "plots")]) == 0
    assert list((tmp_path / "plots").glob("*.png"))
    assert {p.name for p in run.iterdir()} == before, "readers must not delete or rename anything"
    # and the run continues from there
    assert main(["train", "ppo", "--resume", str(run), "--quiet"]) == 0
    assert load_checkpoint(run).state["updates"] == 8
    assert not list(run.glob(".checkpoint.*")), "the next save cleans up the interrupted one"


# The child dies by SIGKILL right after update KILL_AT (a periodic save came after update 4).
_KILL_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from rlcode.cli.app import main
    from rlcode.policy_gradient.train import PolicyGradientRun

    real_step = PolicyGradientRun.step
    def step(self):
        stats = real_step(self)
        if self.updates == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return stats
    PolicyGradientRun.step = step
    main(["train", "ppo", "--run-dir", sys.argv[1], *sys.argv[2:]])
    """
)


def test_run_killed_midway_resumes_bit_for_bit(tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    flags = [*FLAGS, "--save-every", "2", "--normalize-observations", "--normalize-rewards"]
    assert main(["train", "ppo", "--run-dir", str(straight), *flags]) == 0
    child = subprocess.run([sys.executable, "-c", _KILL_RUN, str(killed), *flags], timeout=120)
    assert child.returncode == -9
    assert load_checkpoint(killed).state["updates"] == 4  # the last periodic save before the kill
    assert main(["train", "ppo", "--resume", str(killed), "--quiet"]) == 0

    a, b = load_checkpoint(straight, framework="torch"), load_checkpoint(killed, framework="torch")
    assert a.state["updates"] == b.state["updates"] == 8
    for stem in ("model", "optimizer", "rng"):
        assert a.tensors[stem].keys() == b.tensors[stem].keys()
        for name, tensor in a.tensors[stem].items():
            assert torch.equal(tensor, b.tensors[stem][name]), f"{stem}/{name} differs after resume"
    for key in ("normalizer", "collector", "env"):
        assert a.state[key] == b.state[key]
    assert a.state["result"]["mean_return"] == b.state["result"]["mean_return"]

    def steps(run: Path) -> list[float]:
        return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    # the records logged after the periodic save were dropped and logged again: steps continue, once each
    assert steps(killed) == steps(straight)
    assert json.loads((killed / ".rlcode-run.json").read_text())["finished"]
