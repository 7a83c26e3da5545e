"""PPOConfig takes every TRL 0.11.4 field with TRL's default; wrong types and useless settings are reported."""

import dataclasses
import sys
import warnings

import pytest

from rlcode.configs import ConfigError, config_from_dict, config_to_dict
from rlcode.rlhf import PPOConfig

# TRL 0.11.4's PPOConfig fields and defaults (exp_name, whose default is the script's name, aside).
TRL_DEFAULTS = {
    "seed": 0, "log_with": None, "task_name": None, "model_name": "gpt2", "query_dataset": "stanfordnlp/imdb",
    "reward_model": "sentiment-analysis:lvwerra/distilbert-imdb", "remove_unused_columns": True,
    "tracker_kwargs": {}, "accelerator_kwargs": {}, "project_kwargs": {}, "tracker_project_name": "trl",
    "push_to_hub_if_best_kwargs": {}, "steps": 20000, "learning_rate": 1.41e-5, "adap_kl_ctrl": True,
    "init_kl_coef": 0.2, "kl_penalty": "kl", "target": 6.0, "horizon": 10000.0, "gamma": 1.0, "lam": 0.95,
    "cliprange": 0.2, "cliprange_value": 0.2, "vf_coef": 0.1, "batch_size": 128, "forward_batch_size": None,
    "mini_batch_size": 128, "gradient_accumulation_steps": 1, "ppo_epochs": 4, "max_grad_norm": None,
    "optimize_cuda_cache": None, "optimize_device_cache": False, "early_stopping": False, "target_kl": 1.0,
    "compare_steps": 1, "ratio_threshold": 10.0, "use_score_scaling": False, "use_score_norm": False,
    "score_clip": None, "whiten_rewards": False, "gradient_checkpointing": False, "is_encoder_decoder": None,
    "is_peft_model": None, "dataset_num_proc": None,
}


def test_every_trl_field_has_trls_default_and_derived_values():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults warn about nothing
        config = PPOConfig()
    assert {name: getattr(config, name) for name in TRL_DEFAULTS} == TRL_DEFAULTS
    assert config.exp_name == sys.argv[0].split("/")[-1].removesuffix(".py")
    assert (config.backward_batch_size, config.world_size, config.global_batch_size) == (128, 1, 128)
    assert config.global_backward_batch_size == 128 and config.total_ppo_epochs == 157  # ceil(20000 / 128)
    derived = PPOConfig(batch_size=12, mini_batch_size=2, gradient_accumulation_steps=3, steps=25,
                        backward_batch_size=999, world_size=7)  # given derived values are recomputed, as in TRL
    assert (derived.backward_batch_size, derived.world_size, derived.total_ppo_epochs) == (6, 1, 3)


def test_all_fields_of_trl_are_accepted_as_keywords():
    config = PPOConfig(**{**TRL_DEFAULTS, "exp_name": "x", "backward_batch_size": None, "global_batch_size": None,
                          "global_backward_batch_size": None, "world_size": None})
    assert config.exp_name == "x"


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("learning_rate", "1e-5", "expected float"),
    ("batch_size", 8.0, "expected int"),
    ("adap_kl_ctrl", 1, "expected bool"),
    ("tracker_kwargs", "wandb", "expected dict"),
    ("log_with", "mlflow", "expected one of 'wandb', 'tensorboard', 'jsonl' or None"),
    ("score_clip", "1", "expected float or None"),
    ("model_name", None, "expected str"),
    ("mini_batch_size", True, "expected int"),
])
def test_a_wrong_type_is_one_line_naming_field_given_and_expected(field, value, expected):
    with pytest.raises(ConfigError) as error:
        PPOConfig(**{field: value})
    message = str(error.value)
    assert "\n" not in message and f"PPOConfig.{field}" in message and expected in message
    assert f"got {type(value).__name__}" in message


def test_numpy_integers_are_ints():
    np = pytest.importorskip("numpy")
    config = PPOConfig(batch_size=np.int64(8), mini_batch_size=4)
    assert type(config.batch_size) is int and config.backward_batch_size == 4


def test_forward_batch_size_is_trls_deprecated_alias_of_mini_batch_size():
    with pytest.warns(FutureWarning, match="mini_batch_size"):
        config = PPOConfig(batch_size=8, forward_batch_size=2)
    assert config.mini_batch_size == 2 and config.backward_batch_size == 2
    assert config.no_grad_batch_size is None  # rlcode's own no-grad chunking is a separate field


def test_fields_without_effect_are_named_in_one_warning():
    with pytest.warns(UserWarning) as record:
        PPOConfig(accelerator_kwargs={"mixed_precision": "no"}, optimize_device_cache=True, compare_steps=2,
                  project_kwargs={"logging_dir": "logs", "automatic_checkpoint_naming": True})
    messages = [str(w.message) for w in record if "no effect" in str(w.message)]
    assert len(messages) == 1
    for name in ("accelerator_kwargs", "optimize_device_cache", "compare_steps", "automatic_checkpoint_naming"):
        assert name in messages[0]
    assert "logging_dir" not in messages[0] and "seed" not in messages[0]


def test_encoder_decoder_is_refused_clearly():
    with pytest.raises(ConfigError, match="decoder-only"):
        PPOConfig(is_encoder_decoder=True)
    PPOConfig(is_encoder_decoder=False)


def test_wandb_without_wandb_installed_fails_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    with pytest.raises(ImportError, match="wandb"):
        PPOConfig(log_with="wandb")


def test_frozen_with_replace_and_dict_round_trip():
    config = PPOConfig(batch_size=8, mini_batch_size=2, tracker_kwargs={"wandb": {"entity": "me"}},
                       project_kwargs={"logging_dir": "logs"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 16  # type: ignore[misc]
    bigger = dataclasses.replace(config, batch_size=16)
    assert bigger.batch_size == 16 and bigger.global_batch_size == 16
    assert config_from_dict(PPOConfig, config_to_dict(config)) == config
    flat = config.to_dict()
    assert flat["tracker_kwargs/wandb/entity"] == "me" and flat["project_kwargs/logging_dir"] == "logs"
    assert config.logging_dir == "logs"
