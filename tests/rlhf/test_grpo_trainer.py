"""GRPOTrainer on a tiny random GPT-2: grouping, first ratio, reference handling, input checks, learning."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rlcode.configs import ConfigError
from rlcode.rlhf import GRPOConfig, GRPOTrainer
from rlcode.rlhf import ppo_trainer as ppo_trainer_module
from rlcode.rlhf.kl_estimators import exact_kl

from .conftest import assert_same_step, make_batch, make_model

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


def sequence_log_prob(model, query: torch.Tensor, response: torch.Tensor) -> float:
    """log π(response | query) from one plain forward of the transformers model."""
    tokens = torch.cat([query, response])[None]
    with torch.no_grad():
        logits = model.pretrained_model(tokens).logits[0, len(query) - 1 : -1]
    return float(torch.log_softmax(logits.double(), -1).gather(-1, response[:, None]).sum())


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_kl_in_the_reward_is_the_step_with_scores_minus_beta_times_the_sequence_log_ratio(algorithm):
    beta = 0.5
    queries, responses, scores = grouped_batch(2)
    reference = make_model(seed=3)
    config = GRPOConfig(num_generations=G, learning_rate=1e-3, algorithm=algorithm, beta=beta, kl_in_reward=True,
                        kl_estimator="k1")
    trainer = GRPOTrainer(config, make_model(), ref_model=reference)
    repeated = [q for q in queries for _ in range(G)]
    penalised = [float(s) - beta * (sequence_log_prob(trainer.model, q, r) - sequence_log_prob(reference, q, r))
                 for q, r, s in zip(repeated, responses, scores)]
    plain = trainer_for(algorithm=algorithm)
    stats = trainer.step(queries, responses, scores)
    plain.step(queries, responses, penalised)
    assert stats["kl"] != 0.0
    torch.testing.assert_close(a_weight(trainer), a_weight(plain), rtol=0, atol=1e-6)


@pytest.mark.parametrize("algorithm,kl_estimator", [("grpo", "k2"), ("grpo", "k3"), ("rloo", "k3")])
def test_kl_in_the_loss_pulls_towards_the_reference(algorithm, kl_estimator):
    """Equal scores (zero advantages): only the KL term moves the weights, and the exact per-token KL over
    the vocabulary at the response positions falls (k2 and k3 in the loss have KL(π‖ref)'s gradient)."""
    queries, responses, _ = grouped_batch(2)
    reference = make_model(seed=3)
    config = GRPOConfig(num_generations=G, learning_rate=1e-3, algorithm=algorithm, beta=1.0,
                        kl_estimator=kl_estimator, kl_in_reward=False)
    trainer = GRPOTrainer(config, make_model(), ref_model=reference)
    repeated = [q for q in queries for _ in range(G)]

    def exact() -> float:
        total = 0.0
        for query, response in zip(repeated, responses):
            tokens = torch.cat([query, response])[None]
            with torch.no_grad():
                logits, ref_logits = (m.pretrained_model(tokens).logits[0, len(query) - 1 : -1].double()
                                      for m in (trainer.model, reference))
            total += float(exact_kl(logits, ref_logits).sum())
        return total

    before = exact()
    for _ in range(10):
        trainer.step(queries, responses, [1.0] * len(responses))
    after = exact()
    assert after < 0.9 * before, (before, after)


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
    dict(kl_in_reward="yes"), dict(use_bias_correction_kl=1), dict(report_to="mlflow"), dict(logging_dir=3),
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


def test_kl_is_bias_corrected_by_default_as_in_trl_and_the_switch_changes_only_the_kl_term():
    """TRL 1.16's use_bias_correction_kl=True multiplies k3 by the importance weight: same value at ratio 1,
    another gradient (tests/rlhf/test_grpo_trl_parity.py checks the numbers against TRL itself)."""
    assert GRPOConfig().use_bias_correction_kl
    batch, reference = grouped_batch(2), make_model(seed=7)
    after = {}
    for corrected in (True, False):
        for beta in (0.0, 0.1):
            config = GRPOConfig(num_generations=G, learning_rate=1e-3, beta=beta, use_bias_correction_kl=corrected)
            trainer = GRPOTrainer(config, make_model(), ref_model=reference if beta else None)
            trainer.step(*batch)
            after[corrected, beta] = a_weight(trainer)
    assert torch.equal(after[True, 0.0], after[False, 0.0])
    assert not torch.allclose(after[True, 0.1], after[False, 0.1], rtol=0, atol=1e-7)


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


@pytest.mark.parametrize("settings", [dict(), dict(algorithm="rloo", beta=0.1, mini_batch_size=4)])
def test_a_saved_trainer_resumes_with_the_same_next_steps(tmp_path, settings):
    """Save after one step, load, and the next two steps (minibatch order, sampling, Adam moments,
    the schedule, the reference) are those of the trainer that never stopped."""
    trainer = trainer_for(**settings)
    trainer.optimizer = torch.optim.Adam(trainer.parameters, lr=1e-3)
    trainer.lr_scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, step_size=1, gamma=0.5)
    trainer.step(*grouped_batch(2))
    trainer.save(tmp_path / "run")
    expected = [trainer.step(*grouped_batch(2, seed=7)), trainer.step(*grouped_batch(2, seed=8))]
    sampled = trainer.generate([torch.tensor([3, 4])], max_new_tokens=4)

    model = make_model(seed=9)  # other weights: load() must restore them
    optimizer = torch.optim.Adam(model.pretrained_model.parameters(), lr=1e-3)  # GRPO trains no value head
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    resumed = GRPOTrainer.load(tmp_path / "run", model=model, optimizer=optimizer, lr_scheduler=scheduler)
    assert resumed.current_step == 1 and resumed.optimizer.param_groups[0]["lr"] == 5e-4
    assert (resumed.ref_model is None) == (trainer.ref_model is None)
    got = [resumed.step(*grouped_batch(2, seed=7)), resumed.step(*grouped_batch(2, seed=8))]
    for before, after in zip(expected, got):
        assert_same_step(before, after, trainer.model, resumed.model)
    assert all(torch.equal(a, b) for a, b in zip(sampled, resumed.generate([torch.tensor([3, 4])], max_new_tokens=4)))


def test_a_ppo_checkpoint_is_refused_by_grpo_load(tmp_path):
    from rlcode.rlhf import PPOConfig, PPOTrainer

    PPOTrainer(PPOConfig(batch_size=2, mini_batch_size=1), make_model()).save(tmp_path / "ppo")
    with pytest.raises(ValueError, match="ppo checkpoint"):
        GRPOTrainer.load(tmp_path / "ppo")


def test_response_masks_leave_tokens_out_of_the_loss():
    """A masked-out token gets no gradient: masking a response's last token equals cutting it off
    (dapo's normaliser counts trained tokens only)."""
    queries, responses, scores = grouped_batch(2)
    masks = [torch.ones(len(r), dtype=torch.long) for r in responses]
    masks[0][-1] = 0
    masked = trainer_for()
    masked.step(queries, responses, scores, response_masks=masks)
    cut = trainer_for()
    cut.step(queries, [responses[0][:-1], *responses[1:]], scores)
    torch.testing.assert_close(a_weight(masked), a_weight(cut), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="at least one 1"):
        trainer_for().step(queries, responses, scores, response_masks=[torch.zeros(len(r)) for r in responses])


def test_save_pretrained_writes_a_plain_causal_lm(tmp_path):
    from transformers import AutoModelForCausalLM

    trainer = trainer_for()
    trainer.step(*grouped_batch(2))
    trainer.save_pretrained(tmp_path / "policy")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "policy")
    torch.testing.assert_close(loaded.transformer.h[0].mlp.c_fc.weight, a_weight(trainer), rtol=0, atol=0)


def test_report_to_jsonl_writes_every_steps_statistics_and_the_completions(tmp_path):
    import json

    class DigitTokenizer:  # decodes ids as space-separated numbers
        def batch_decode(self, rows, skip_special_tokens=True):
            return [" ".join(str(int(t)) for t in row) for row in rows]

    config = GRPOConfig(num_generations=G, report_to="jsonl", logging_dir=str(tmp_path / "logs"),
                        log_completions=True)
    trainer = GRPOTrainer(config, make_model(), tokenizer=DigitTokenizer())
    queries, responses, scores = grouped_batch(2)
    stats = [trainer.step(queries, responses, scores), trainer.step(queries, responses, scores)]
    records = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert records[1]["loss"] == pytest.approx(stats[1]["loss"]) and "reward_std" in records[0]
    samples = [json.loads(line) for line in (tmp_path / "logs" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * len(responses)
    assert samples[G]["prompt"] == " ".join(str(int(t)) for t in queries[1])
    assert samples[G]["reward"] == pytest.approx(float(scores[G]))


def test_rloo_names_are_the_grpo_trainer_with_algorithm_rloo(tmp_path):
    from rlcode.rlhf import RLOOConfig, RLOOTrainer

    config = RLOOConfig(num_generations=G)
    assert config.algorithm == "rloo" and config.reward_kl and config.advantage_estimator == "rloo"
    trainer = RLOOTrainer(config, make_model())
    trainer.step(*grouped_batch(2))
    trainer.save(tmp_path / "rloo")
    assert RLOOTrainer.load(tmp_path / "rloo").config.algorithm == "rloo"
    with pytest.raises(ValueError, match="algorithm='rloo'"):
        RLOOTrainer(GRPOConfig(num_generations=G), make_model())
