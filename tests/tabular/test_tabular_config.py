"""Every invalid tabular config raises a ConfigError that names the field; envs are checked early."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from rlcode.configs import ConfigError
from rlcode.tabular.config import CONFIGS, ExpectedSarsaConfig, QLearningConfig, SarsaConfig

INVALID = [
    ("env", ""),
    ("map_size", 5),
    ("map_desc", "SFFF,FHF"),
    ("map_desc", "SFFF,FXFH"),
    ("map_desc", "FFFF,FHFG"),
    ("max_episode_steps", -1),
    ("max_episode_steps", 2.5),
    ("episodes", 0),
    ("gamma", 0.0),
    ("gamma", 1.5),
    ("learning_rate", 0.0),
    ("learning_rate", 2.0),
    ("learning_rate_end", -0.1),
    ("learning_rate_decay", "cosine"),
    ("epsilon_start", 1.5),
    ("epsilon_end", -0.1),
    ("epsilon_decay_fraction", 0.0),
    ("initial_q", float("nan")),
    ("seed", -1),
    ("eval_episodes", 0),
    ("log_points", 0),
    ("backend", "gpu"),
]


@pytest.mark.parametrize("field_name, value", INVALID)
@pytest.mark.parametrize("cls", [QLearningConfig, SarsaConfig, ExpectedSarsaConfig])
def test_invalid_value_names_the_field(cls, field_name, value):
    with pytest.raises(ConfigError) as error:
        cls(**{field_name: value})
    message = str(error.value)
    assert f"{cls.__name__}.{field_name}=" in message and "allowed" in message


def test_epsilon_end_above_start_names_the_fix():
    with pytest.raises(ConfigError, match=r"epsilon_end=0.5 .*epsilon_end <= epsilon_start"):
        QLearningConfig(epsilon_start=0.2, epsilon_end=0.5)


def test_map_desc_needs_frozen_lake():
    with pytest.raises(ConfigError, match="map_desc"):
        QLearningConfig(env="Taxi-v4", map_desc="SFFG")


def test_configs_are_frozen_documented_and_registered():
    from rlcode.algorithms import config_class

    config = QLearningConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.gamma = 0.5  # type: ignore[misc]
    for name, cls in CONFIGS.items():
        assert config_class(name) is cls and cls.algorithm == name
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls))
    assert QLearningConfig(map_desc="SF, HG").map_rows == ["SF", "HG"]


def test_config_module_imports_neither_torch_nor_gymnasium():
    code = ("import sys, rlcode.tabular.config, rlcode.tabular.commands; "
            "print(sorted(m for m in ('torch', 'gymnasium', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
