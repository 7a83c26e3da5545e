import pytest

from rlcode.configs import ConfigError, config_from_dict, config_to_dict
from rlcode.rlhf import PPOConfig


def test_defaults_are_trl_011():
    config = PPOConfig()
    assert (config.batch_size, config.mini_batch_size, config.ppo_epochs, config.gradient_accumulation_steps) == (
        128, 128, 4, 1)
    assert config.learning_rate == 1.41e-5 and config.adap_kl_ctrl and config.init_kl_coef == 0.2
    assert (config.target, config.horizon, config.kl_penalty) == (6, 10000, "kl")
    assert (config.gamma, config.lam, config.cliprange, config.cliprange_value, config.vf_coef) == (1, 0.95, 0.2, 0.2, 0.1)
    assert not config.whiten_rewards and not config.use_score_scaling and not config.use_score_norm
    assert config.score_clip is None and config.max_grad_norm is None and config.ratio_threshold == 10.0
    assert not config.early_stopping and config.target_kl == 1 and config.seed == 0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(batch_size=10, mini_batch_size=4), "multiple of mini_batch_size"),
        (dict(batch_size=8, mini_batch_size=4, gradient_accumulation_steps=3), "gradient_accumulation_steps"),
        (dict(mini_batch_size=0), "mini_batch_size"),
        (dict(kl_penalty="kl2"), "kl_penalty"),
        (dict(lam=1.5), "lam"),
        (dict(cliprange=0.0), "cliprange"),
        (dict(score_clip=-1.0), "score_clip"),
        (dict(use_score_norm=True), "use_score_scaling"),
        (dict(no_grad_batch_size=0), "no_grad_batch_size"),
    ],
)
def test_invalid_values_name_the_field(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        PPOConfig(**kwargs)


def test_round_trip_through_dict():
    config = PPOConfig(batch_size=8, mini_batch_size=2, score_clip=1.5, kl_penalty="full")
    assert config_from_dict(PPOConfig, config_to_dict(config)) == config
    assert config.backward_batch_size == 2
