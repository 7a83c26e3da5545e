"""Env ids as users write them: module:EnvId imports its module, namespaces name the package to install."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rlcode.cli.app import main
from rlcode.configs import ConfigError
from rlcode.env_ids import make_env, resolve_env_id, split_env_id
from rlcode.policy_gradient.envs import env_spaces, resolve_vector_mode

DATA = Path(__file__).parent / "data"  # rlcode_test_envs.py registers RlcodeCorridor-v0 and friends on import
CORRIDOR = "rlcode_test_envs:RlcodeCorridor-v0"


@pytest.fixture
def custom_envs(monkeypatch):
    """rlcode_test_envs importable, and not yet imported, so resolving the id must import it."""
    monkeypatch.syspath_prepend(str(DATA))
    monkeypatch.delitem(sys.modules, "rlcode_test_envs", raising=False)


@pytest.mark.parametrize("env_id,expected", [
    ("CartPole-v1", (None, "CartPole-v1")),
    ("mypkg.envs:MyEnv-v1", ("mypkg.envs", "MyEnv-v1")),
    ("ale_py:ALE/Pong-v5", ("ale_py", "ALE/Pong-v5")),
])
def test_split_env_id(env_id, expected):
    assert split_env_id(env_id) == expected


@pytest.mark.parametrize("env_id", [":X-v0", "mypkg:", "a:b:C-v0"])
def test_malformed_module_ids_are_config_errors(env_id):
    with pytest.raises(ConfigError, match="malformed"):
        resolve_env_id(env_id)


def test_module_prefix_is_imported_and_dropped(custom_envs):
    assert resolve_env_id(CORRIDOR) == "RlcodeCorridor-v0"
    assert "rlcode_test_envs" in sys.modules


def test_spaces_and_vector_mode_accept_module_ids(custom_envs):
    observation_space, action_space = env_spaces(CORRIDOR)
    assert observation_space.shape == (1,) and action_space.n == 2
    assert resolve_vector_mode(CORRIDOR, "auto") == "sync"
    # gymnasium.spec() ignores a module: prefix; CartPole's own vector env must still be found through one
    assert resolve_vector_mode("gymnasium.envs.classic_control:CartPole-v1", "auto") == "vector_entry_point"


def test_missing_module_names_it_and_the_fix():
    with pytest.raises(ConfigError, match=r"module 'rlcode_no_such_module' cannot be imported.*PYTHONPATH"):
        resolve_env_id("rlcode_no_such_module:X-v0")


def test_unknown_namespace_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"no installed package registers the gymnasium namespace 'foo'"):
        resolve_env_id("foo/Bar-v0")


def test_ale_without_ale_py_says_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # import ale_py now raises ImportError
    with pytest.raises(ConfigError, match=r"needs the ale-py package.*pip install ale-py"):
        resolve_env_id("ALE/Pong-v5")


@pytest.mark.skipif(importlib.util.find_spec("Box2D") is not None, reason="Box2D is installed")
def test_missing_box2d_is_a_config_error_naming_the_extra():
    with pytest.raises(ConfigError, match=r"gymnasium\[box2d\]"):
        make_env("LunarLander-v3")


@pytest.mark.parametrize("env_id,message", [
    ("foo/Bar-v0", "namespace 'foo'"),
    ("rlcode_no_such_module:X-v0", "module 'rlcode_no_such_module' cannot be imported"),
    ("rlcode_test_envs:RlcodeImageCorridor-v0", "does not support image"),
])
@pytest.mark.parametrize("algorithm", ["ppo", "qlearning"])
def test_cli_reports_bad_env_ids_in_one_line(tmp_path, capsys, custom_envs, env_id, message, algorithm):
    assert main(["train", algorithm, "--env", env_id, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    expected = message if algorithm == "ppo" or "Image" not in env_id else "tabular methods need Discrete"
    assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_ale_image_observations_are_refused_and_ram_trains(tmp_path, capsys):
    pytest.importorskip("ale_py")
    from rlcode.policy_gradient.config import PPOConfig
    from rlcode.policy_gradient.train import train

    assert main(["train", "ppo", "--env", "ALE/Pong-v5", "--run-dir", str(tmp_path / "screen")]) == 2
    err = capsys.readouterr().err
    assert "does not support image" in err and "--env ALE/Pong-ram-v5" in err and err.count("\n") == 1
    observation_space, _ = env_spaces("ALE/Pong-ram-v5")
    assert observation_space.shape == (128,)
    config = PPOConfig(env_id="ALE/Pong-ram-v5", num_envs=2, num_steps=16, minibatch_size=16,
                       total_timesteps=32, eval_episodes=1)
    result = train(config, run_dir=tmp_path / "ram", quiet=True)
    assert -21 <= result["mean_return"] <= 21 and (tmp_path / "ram" / "checkpoint").exists()
