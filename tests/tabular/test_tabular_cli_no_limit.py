"""`rlcode optimum` and `rlcode train` with --max-episode-steps 0: finite, exact figures and the real map."""

from __future__ import annotations

import json
import re

import numpy as np

from rlcode.cli.app import main
from rlcode.tabular import planning
from rlcode.tabular.config import QLearningConfig
from rlcode.tabular.envs import make_env, transition_table

NO_LIMIT = ["--env", "FrozenLake-v1", "--no-slippery", "--max-episode-steps", "0"]


def test_optimum_without_time_limit_prints_a_policy_worth_one(capsys):
    assert main(["optimum", *NO_LIMIT]) == 0
    out = capsys.readouterr().out
    assert re.search(r"best stationary policy, no time limit\s*│\s*1\.0000", out), out
    assert main(["optimum", *NO_LIMIT, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # the printed policy is itself worth 1 (argmax over tied actions walked into the wall at the start: 0)
    table = transition_table(make_env(QLearningConfig(slippery=False, max_episode_steps=0)))
    policy_value = planning.start_value(table, planning.evaluate_policy(table, np.array(summary["policy"]), 1.0))
    assert policy_value == summary["stationary"] == 1.0
    assert summary["policy_grid"][0][0] in "↓→"


def test_train_frozen_lake_8x8_without_time_limit_is_finite_and_titled_8x8(tmp_path, capsys):
    assert main(["train", "qlearning", "--env", "FrozenLake8x8-v1", "--max-episode-steps", "0", "--episodes",
                 "3000", "--eval-episodes", "10", "--log-points", "2", "--run-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "FrozenLake8x8-v1 8x8 slippery" in out and "4x4" not in out
    learned = re.search(r"learned greedy policy \(exact value\)\s*│\s*(\S+)", out)
    gap = re.search(r"gap to optimum\s*│\s*(\S+) %", out)
    assert learned and gap, out
    assert np.isfinite(float(learned.group(1))) and np.isfinite(float(gap.group(1)))
