"""GRPOTrainer on a tiny random GPT-2: grouping, first ratio, reference handling, input checks, learning."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rlcode.configs import ConfigError
from rlcode.rlhf import GRPOConfig, GRPOTrainer
from rlcode.rlhf import ppo_trainer as ppo_trainer_module

from .conftest import make_batch, make_model

G = 4


def grouped_batch(prompts: int, seed: int = 1):
    """P prompts, each with G random responses, and P·G scores."""
    queries, _, _ = make_batch(prompts, seed=seed)
    _, responses, scores = make_batch(prompts * G, seed=seed + 1)
    return queries, responses, scores


def trainer_for(**settings) -> GRPOTrainer:
    settings = {"num_generations": G, "learning_rate": 1e-3, **settings}
    return GRPOTrainer(GRPOConfig(**settings), make_model())


def a_weight(trainer: GRPOTrainer) -> torch.Tensor:
    return trainer.model.pretrained_model.transformer.h[0].mlp.c_fc.weight.detach().clone()


def test_generate_returns_g_responses_per_query_in_query_major_order():
    trainer = trainer_for()
    queries = [torch.tensor([3, 4, 5]), torch.tensor([6, 7])]
    sampled = trainer.generate(queries, max_new_tokens=5)
    assert len(sampled) == 2 * G and all(1 <= len(r) <= 5 for r in sampled)
    # greedy: a group's G responses are equal, and each is its own query's greedy answer (no prompt)
    greedy = trainer.generate(queries, do_sample=False, max_new_tokens=5)
    for p, query in enumerate(queries):
        alone = trainer.generate([query], num_generations=1, do_sample=False, max_new_tokens=5)[0]
        assert all(torch.equal(r, alone) for r in greedy[p * G : (p + 1) * G])
    assert not torch.equal(greedy[0], greedy[G])
    assert len(trainer.generate(queries, num_generations=2, max_new_tokens=3)) == 4


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_step_changes_weights_returns_finite_stats_and_first_ratio_is_exactly_one(algorithm):
    trainer = trainer_for(algorithm=algorithm, mini_batch_size=3, num_iterations=2)
    queries, responses, scores = grouped_batch(3)
    before = a_weight(trainer)
    stats = trainer.step(queries, responses, scores)
    assert not torch.equal(before, a_weight(trainer))
    assert all(math.isfinite(v) for v in stats.values())
    for key in ("loss", "reward", "reward_std", "clip_ratio/low_mean", "clip_ratio/high_mean",
                "clip_ratio/region_mean", "entropy", "completions/mean_length", "learning_rate", "grad_norm"):
        assert key in stats, key
    assert "kl" not in stats  # beta = 0
    assert stats["reward"] == pytest.approx(float(torch.stack(scores).mean()), rel=1e-6)
    assert stats["learning_rate"] == 1e-3
    first = trainer.first_ratios
    assert first is not None and first.numel() > 0 and torch.equal(first, torch.ones_like(first))


def test_repeated_queries_give_the_same_step_as_the_prompts():
    queries, responses, scores = grouped_batch(2)
    a = trainer_for()  # each seeds numpy's global RNG (the minibatch order) at construction
    stats_a = a.step(queries, responses, scores)
    b = trainer_for()
    stats_b = b.step([q for q in queries for _ in range(G)], responses, scores)
    assert {k: v for k, v in stats_a.items() if not k.startswith("time/")} == \
        {k: v for k, v in stats_b.items() if not k.startswith("time/")}
    assert torch.equal(a_weight(a), a_weight(b))


def test_beta_zero_builds_no_reference(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("no reference copy with beta=0")

    monkeypatch.setattr(ppo_trainer_module, "create_reference_model", refuse)  # reference_for makes copies
    trainer = trainer_for(beta=0.0)
    assert trainer.ref_model is None
    trainer.step(*grouped_batch(2))


@pytest.mark.parametrize("algorithm,kl_estimator", [("grpo", None), ("grpo", "k2"), ("rloo", None)])
def test_beta_positive_copies_the_policy_and_the_first_kl_is_zero(algorithm, kl_estimator):
    trainer = trainer_for(beta=0.1, algorithm=algorithm, kl_estimator=kl_estimator)
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    stats = trainer.step(*grouped_batch(2))
    assert stats["kl"] == 0.0  # one minibatch: the loss's KL is computed before the only optimizer step
    assert trainer.step(*grouped_batch(2, seed=5))["kl"] != 0.0


def bad_inputs():
    queries, responses, scores = grouped_batch(2)
    return [
        ("responses not a multiple of G", (queries, responses[:-1], scores[:-1])),
        ("wrong number of queries", (queries[:1], responses, scores)),
        ("wrong number of scores", (queries, responses, scores[:-1])),
        ("NaN score", (queries, responses, scores[:-1] + [torch.tensor(float("nan"))])),
        ("infinite score", (queries, responses, [float("inf")] + scores[1:])),
        ("group with two prompts", ([queries[0]] * (G - 1) + [queries[1]] * (G + 1), responses, scores)),
        ("token out of vocabulary", (queries, responses[:-1] + [torch.tensor([999])], scores)),
        ("empty response", (queries, responses[:-1] + [torch.tensor([], dtype=torch.long)], scores)),
    ]


@pytest.mark.parametrize("case", range(len(bad_inputs())), ids=[name for name, _ in bad_inputs()])
def test_bad_inputs_raise_before_any_weight_changes(case):
    trainer = trainer_for()
    before = a_weight(trainer)
    with pytest.raises(ValueError):
        trainer.step(*bad_inputs()[case][1])
    assert torch.equal(before, a_weight(trainer))


def test_beta_without_reference_and_too_long_responses_raise_before_weights_change():
    trainer = trainer_for(beta=0.1)
    trainer.ref_model = None
    before = a_weight(trainer)
    with pytest.raises(ValueError, match="reference"):
        trainer.step(*grouped_batch(2))
    short = trainer_for(max_completion_length=1, estimator="dr_grpo", loss_type="dr_grpo")
    before_short = a_weight(short)
    with pytest.raises(ValueError, match="max_completion_length"):
        short.step(*grouped_batch(2))
    assert torch.equal(before, a_weight(trainer)) and torch.equal(before_short, a_weight(short))


@pytest.mark.parametrize("settings", [
    dict(num_generations=1), dict(algorithm="rloo", num_generations=1), dict(algorithm="rloo", estimator="grpo"),
    dict(estimator="dr_grpo", scale_rewards="group"), dict(epsilon=1.0), dict(beta=-0.1), dict(learning_rate=0.0),
    dict(mini_batch_size=0), dict(num_iterations=0), dict(kl_estimator="k4"), dict(loss_type="sum"),
    dict(max_grad_norm=float("inf")),
])
def test_config_rejects_bad_values(settings):
    with pytest.raises(ConfigError):
        GRPOConfig(**settings)


def test_config_defaults_follow_the_algorithm():
    grpo, rloo = GRPOConfig(), GRPOConfig(algorithm="rloo")
    assert (grpo.advantage_estimator, grpo.reward_scale, grpo.kl_kind) == ("grpo", "group", "k3")
    assert (rloo.advantage_estimator, rloo.reward_scale, rloo.kl_kind) == ("rloo", "none", "k1")
    assert GRPOConfig(num_generations=1, estimator="dr_grpo").reward_scale == "none"
    with pytest.raises(dataclasses.FrozenInstanceError):
        grpo.beta = 1.0  # type: ignore[misc]


def target_fraction(responses: list[torch.Tensor], target: int = 5) -> list[float]:
    return [float((r == target).float().mean()) for r in responses]


@pytest.mark.slow  # about 40 s each on a busy 2-core CI machine
@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_learns_to_emit_the_rewarded_token(algorithm):
    """Reward = fraction of response tokens equal to id 5; 20 steps of P=4 prompts, G=4 samples."""
    trainer = GRPOTrainer(GRPOConfig(algorithm=algorithm, num_generations=4, learning_rate=1e-2, seed=0),
                          make_model(seed=3, eos_token_id=None))
    prompts = [torch.tensor([3, 4]), torch.tensor([6]), torch.tensor([7, 8, 9]), torch.tensor([10, 11])]
    rewards = []
    for _ in range(20):
        responses = trainer.generate(prompts, max_new_tokens=6, min_new_tokens=6)
        scores = target_fraction(responses)
        trainer.step(prompts, responses, scores)
        rewards.append(sum(scores) / len(scores))
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.3, rewards
