"""A sweep over a ``module:EnvId`` env: each spawned worker is a fresh process and imports the module itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rlcode.configs import ConfigError
from rlcode.sweeps.sweeps import run_sweep

DATA = Path(__file__).parent / "data"  # rlcode_test_envs.py registers RlcodeCorridor-v0 on import


def test_local_pool_sweep_over_a_module_env(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))  # spawn workers start with the driver's sys.path, as with PYTHONPATH
    monkeypatch.delitem(sys.modules, "rlcode_test_envs", raising=False)
    result = run_sweep("ppo", env="rlcode_test_envs:RlcodeCorridor-v0", seeds=2, backend="local", workers=2,
                       out_dir=tmp_path / "sweep", quiet=True,
                       overrides={"num_envs": 2, "num_steps": 16, "minibatch_size": 16, "total_timesteps": 64,
                                  "eval_episodes": 2})
    assert not result.failed, [r["error"] for r in result.failed]
    assert [r["status"] for r in result.records] == ["ok", "ok"]


def test_a_bad_env_id_fails_before_any_trial_runs(tmp_path):
    with pytest.raises(ConfigError, match="module 'rlcode_no_such_module' cannot be imported"):
        run_sweep("ppo", env="rlcode_no_such_module:X-v0", seeds=2, backend="local", out_dir=tmp_path / "s",
                  quiet=True)
    assert not (tmp_path / "s").exists()
