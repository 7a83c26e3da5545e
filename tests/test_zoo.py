"""rl-baselines3-zoo YAML files -> rlcode configs; every shipped config file loads into its class."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlcode.algorithms import config_class
from rlcode.configs import ConfigError, config_from_dict, load_config_file
from rlcode.policy_gradient.zoo import CONFIG_READERS, load_yaml_config, parse_kwargs

pg_config = pytest.importorskip("rlcode.policy_gradient.config")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1 entry, as published.
ZOO_CARTPOLE = """
CartPole-v1:
  n_envs: 8
  n_timesteps: !!float 1e5
  policy: 'MlpPolicy'
  n_steps: 32
  batch_size: 256
  gae_lambda: 0.8
  gamma: 0.98
  n_epochs: 20
  ent_coef: 0.0
  learning_rate: lin_0.001
  clip_range: lin_0.2
"""


def _write(tmp_path: Path, text: str, name: str = "ppo.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_zoo_cartpole_entry_becomes_a_ppo_config(tmp_path):
    path = _write(tmp_path, ZOO_CARTPOLE)
    values = load_yaml_config(path)
    assert values["env_id"] == "CartPole-v1"
    config = config_from_dict(pg_config.PPOConfig, load_config_file(path, readers=CONFIG_READERS))  # --config
    assert (config.num_envs, config.num_steps, config.minibatch_size, config.num_epochs) == (8, 32, 256, 20)
    assert (config.total_timesteps, config.gamma, config.gae_lambda, config.entropy_coef) == (
        100_000,
        0.98,
        0.8,
        0,
    )
    assert (config.learning_rate, config.lr_schedule) == (0.001, "linear")
    assert (config.clip_range, config.clip_range_schedule) == (0.2, "linear")


def test_plain_numbers_mean_constant_schedules_as_in_sb3(tmp_path):
    values = load_yaml_config(
        _write(tmp_path, "Acrobot-v1:\n  learning_rate: !!float 3e-4\n  clip_range: 0.1\n")
    )
    assert values == {
        "env_id": "Acrobot-v1",
        "learning_rate": 3e-4,
        "lr_schedule": "constant",
        "clip_range": 0.1,
        "clip_range_schedule": "constant",
    }


def test_policy_kwargs_string_is_parsed_without_eval(tmp_path):
    text = (
        "Pendulum-v1:\n"
        '  policy_kwargs: "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, '
        'net_arch=dict(pi=[64, 64], vf=[64, 64]))"\n'
        "  normalize: \"{'norm_obs': True, 'norm_reward': False}\"\n"
        "  use_rms_prop: true\n"
    )
    values = load_yaml_config(_write(tmp_path, text))
    assert values["log_std_init"] == -2 and values["orthogonal_init"] is False
    assert values["activation"] == "relu" and values["hidden_sizes"] == [64, 64]
    assert values["normalize_observations"] is True and values["normalize_rewards"] is False
    assert values["optimizer"] == "rmsprop"


def test_policy_kwargs_forms():
    assert parse_kwargs("dict(net_arch=[dict(pi=[8], vf=[8])], activation_fn=th.nn.Tanh)", "k") == {
        "net_arch": [{"pi": [8], "vf": [8]}],
        "activation_fn": "th.nn.Tanh",
    }
    assert parse_kwargs("{'ortho_init': False}", "k") == {"ortho_init": False}
    assert parse_kwargs({"ortho_init": True}, "k") == {"ortho_init": True}


def test_code_in_policy_kwargs_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError, match="not a literal"):
        parse_kwargs(f"dict(net_arch=open({str(marker)!r}, 'w'))", "policy_kwargs")
    with pytest.raises(ConfigError, match="not valid Python"):
        parse_kwargs("dict(net_arch=[64,", "policy_kwargs")
    assert not marker.exists()


def test_normalize_true_sets_both(tmp_path):
    values = load_yaml_config(_write(tmp_path, "MountainCarContinuous-v0:\n  normalize: true\n"))
    assert values["normalize_observations"] is True and values["normalize_rewards"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "CartPole-v1:\n  n_envs: 8\nAcrobot-v1:\n  n_envs: 16\n",
            r"2 entries \['Acrobot-v1', 'CartPole-v1'\].*keep only",
        ),
        (
            "Pendulum-v1:\n  use_sde: true\n  sde_sample_freq: 4\n",
            r"\['sde_sample_freq', 'use_sde'\] are not supported",
        ),
        ("Pendulum-v1:\n  policy_kwargs: 'dict(squash_output=True)'\n", r"policy_kwargs.squash_output"),
        ("Pendulum-v1:\n  policy_kwargs: 'dict(net_arch=dict(pi=[64], vf=[32]))'\n", "same hidden sizes"),
        ("Pendulum-v1:\n  ent_coef: lin_0.01\n", "only learning_rate and clip_range"),
        ("Pendulum-v1:\n  policy: CnnPolicy\n", "MLP policies"),
        ("Pendulum-v1:\n  policy_kwargs: 'dict(activation_fn=nn.GELU)'\n", "nn.GELU"),
        ("- just\n- a list\n", "must map an env id"),
        ("CartPole-v1: [1, 2]\n", "the entry must be"),
        ("CartPole-v1:\n  n_envs: [\n", "not valid YAML"),
    ],
)
def test_bad_files_get_errors_that_say_what_to_do(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_yaml_config(_write(tmp_path, text))


def test_ignored_zoo_keys_that_change_the_env_warn(tmp_path):
    with pytest.warns(RuntimeWarning, match="env_wrapper"):
        values = load_yaml_config(
            _write(tmp_path, "Pendulum-v1:\n  env_wrapper: sb3_contrib.TimeFeatureWrapper\n")
        )
    assert values == {"env_id": "Pendulum-v1"}


def test_rlcode_field_names_pass_through_beside_zoo_names(tmp_path):
    values = load_yaml_config(_write(tmp_path, "CartPole-v1:\n  n_envs: 4\n  torch_threads: 2\n"))
    assert values == {"env_id": "CartPole-v1", "num_envs": 4, "torch_threads": 2}


def test_tabular_class_uses_its_own_field_names(tmp_path):
    tabular = pytest.importorskip("rlcode.tabular.config")
    values = load_yaml_config(
        _write(tmp_path, "FrozenLake-v1:\n  gamma: 0.99\n  learning_rate: 0.2\n  episodes: 5000\n"),
        config_class=tabular.QLearningConfig,
    )
    assert values == {"env": "FrozenLake-v1", "gamma": 0.99, "learning_rate": 0.2, "episodes": 5000}
    config_from_dict(tabular.QLearningConfig, values)


def shipped_configs() -> list[Path]:
    return sorted(p for p in CONFIGS.glob("*/*") if p.suffix in (".yml", ".yaml", ".toml", ".json"))


def test_configs_are_shipped():
    algorithms = {path.parent.name for path in shipped_configs()}
    assert {"ppo", "qlearning"} <= algorithms


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads_into_its_class(path):
    cls = config_class(path.parent.name)  # configs/<algorithm>/<env>.<suffix>
    if path.suffix in (".yml", ".yaml"):
        values = load_yaml_config(path, config_class=cls)
    else:
        values = load_config_file(path)
    config = config_from_dict(cls, values, source=str(path))
    env_id = getattr(config, "env_id", None) or config.env
    assert path.stem == env_id


def test_yaml_is_read_by_the_tier_that_hands_in_its_reader(tmp_path):
    """rlcode.configs imports no tier: YAML is read only through the readers the registry hands in."""
    from rlcode.algorithms import get_algorithm

    path = _write(tmp_path, ZOO_CARTPOLE)
    with pytest.raises(ConfigError, match=r"unknown suffix; use \.toml, \.json\."):
        load_config_file(path)
    assert get_algorithm("ppo").readers() == CONFIG_READERS
    assert get_algorithm("qlearning").readers() == {}
    assert load_config_file(path, readers=get_algorithm("a2c").readers())["env_id"] == "CartPole-v1"
