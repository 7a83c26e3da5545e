"""Bad configs, mismatched spaces and continuous-only options fail before any env is stepped."""

from __future__ import annotations

import dataclasses

import pytest

from rlcode.configs import ConfigError, config_from_dict
from rlcode.policy_gradient.config import ZOO_KEYS, A2CConfig, PPOConfig, ReinforceConfig


def test_minibatch_size_must_divide_the_rollout():
    with pytest.raises(ConfigError, match=r"minibatch_size=100 does not divide .* 8\*32 = 256"):
        PPOConfig(minibatch_size=100)


@pytest.mark.parametrize(
    "cls,field,value,fragment",
    [
        (PPOConfig, "gamma", 1.5, "gamma=1.5"),
        (PPOConfig, "clip_range", 0.0, "clip_range=0.0"),
        (A2CConfig, "gae_lambda", -0.1, "gae_lambda=-0.1"),
        (ReinforceConfig, "num_envs", 0, "num_envs=0"),
        (PPOConfig, "hidden_sizes", (), "hidden_sizes"),
        (PPOConfig, "total_timesteps", 10, "smaller than one rollout"),
        (PPOConfig, "value_clip_range", -1.0, "value_clip_range"),
    ],
)
def test_bad_hyperparameters_name_the_field(cls, field, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        cls(**{field: value})


def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict(PPOConfig, {"n_steps": 5})


def test_continuous_only_option_on_a_discrete_env_fails_before_any_env_exists(monkeypatch):
    import rlcode.policy_gradient.train as train_module

    def no_env(*args, **kwargs):
        raise AssertionError("an env was built before the config was checked")

    monkeypatch.setattr(train_module, "make_vector_env", no_env)
    with pytest.raises(ConfigError, match=r"log_std_init=-1.0 applies to continuous \(Box\) actions only"):
        train_module.train(PPOConfig(log_std_init=-1.0), run_dir=None, quiet=True)


def test_unsupported_spaces_are_reported(monkeypatch):
    import rlcode.policy_gradient.train as train_module

    with pytest.raises(ConfigError, match="Box \\(vector\\) observation space"):
        train_module.PolicyGradientRun(PPOConfig(env_id="FrozenLake-v1", total_timesteps=256))


def test_zoo_keys_name_real_fields():
    fields = {f.name for cls in (PPOConfig, A2CConfig) for f in dataclasses.fields(cls)}
    for zoo_key, target in ZOO_KEYS.items():
        for name in (target,) if isinstance(target, str) else target:
            assert name in fields, (zoo_key, name)
