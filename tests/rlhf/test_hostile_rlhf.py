"""Hostile inputs to ``PPOTrainer.step``: a refused step changes no weight, optimizer state, score
statistic or counter, and the next good step works."""

from __future__ import annotations

import copy

import pytest
import torch

from rlcode.configs import ConfigError
from rlcode.errors import TrainingDiverged
from rlcode.rlhf import PPOConfig, PPOTrainer
from rlcode.rlhf.update import optimizer_step

from .conftest import make_batch, make_model


def trainer_state(trainer: PPOTrainer) -> tuple:
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    optimizer = copy.deepcopy(trainer.optimizer.state_dict())
    return weights, optimizer, vars(trainer.score_moments).copy(), trainer.current_step, trainer.kl_controller.value


def assert_unchanged(trainer: PPOTrainer, before: tuple) -> None:
    weights, optimizer, moments, step, kl = trainer_state(trainer)
    assert all(torch.equal(a, b) for a, b in zip(before[0], weights))
    assert str(before[1]) == str(optimizer)
    assert (moments, step, kl) == before[2:]


@pytest.mark.parametrize("magnitude", [1e30, 1e20])
def test_huge_scores_are_refused_before_any_weight_moves(magnitude: float) -> None:
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model())
    queries, responses, scores = make_batch(4)
    before = trainer_state(trainer)
    with pytest.raises(TrainingDiverged, match="not finite.*no weights, optimizer state or score statistics"):
        trainer.step(queries, responses, [magnitude, -magnitude, magnitude, 1.0])
    assert_unchanged(trainer, before)
    stats = trainer.step(queries, responses, scores)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert trainer.current_step == 1 and stats["ppo/loss/total"] == stats["ppo/loss/total"]


def test_huge_scores_with_score_scaling_train_with_finite_weights() -> None:
    """Scaling divides by the running std, which is what makes such scores usable: no refusal needed."""
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, use_score_scaling=True), make_model())
    queries, responses, _ = make_batch(4)
    trainer.step(queries, responses, [1e30, -1e30, 1e30, 1.0])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.parametrize("score", [float("inf"), float("nan"), 1e39], ids=["inf", "nan", "1e39 overflows float32"])
def test_non_finite_scores_are_refused_up_front(score: float) -> None:
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model())
    queries, responses, scores = make_batch(4)
    before = trainer_state(trainer)
    with pytest.raises(ValueError, match="NaN or infinite"):
        trainer.step(queries, responses, scores[:3] + [score])
    assert_unchanged(trainer, before)


@pytest.mark.parametrize("lengths", [(40, 30), (64, 1), (1, 64)])
@pytest.mark.parametrize("positions", ["n_positions", "max_position_embeddings"])
def test_too_long_query_and_response_is_refused_before_the_score_moments_move(lengths: tuple, positions: str) -> None:
    model = make_model()
    if positions == "max_position_embeddings":  # the name most non-GPT-2 configs use
        del model.config.n_positions
        model.config.max_position_embeddings = 64
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, use_score_scaling=True), model)
    queries, responses, scores = make_batch(4)
    queries[1] = torch.randint(3, 50, (lengths[0],))
    responses[1] = torch.randint(3, 50, (lengths[1],))
    before = trainer_state(trainer)
    with pytest.raises(ValueError, match=r"queries\[1\] \+ responses\[1\] hold .* the model has 64 positions"):
        trainer.step(queries, responses, scores)
    assert_unchanged(trainer, before)


def test_exactly_max_positions_is_accepted() -> None:
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), make_model())
    queries, responses, scores = make_batch(4)
    queries[0], responses[0] = torch.randint(3, 50, (60,)), torch.randint(3, 50, (4,))
    trainer.step(queries, responses, scores)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("max_norm", [None, 1.0])
def test_a_non_finite_gradient_never_reaches_the_weights(bad: float, max_norm: float | None) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    parameters = list(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer_step(optimizer, parameters, max_norm)  # one good step, so Adam has state to protect
    weights = [p.detach().clone() for p in parameters]
    state = copy.deepcopy(optimizer.state_dict())
    (model(torch.ones(1, 3)).sum() * bad).backward()
    with pytest.raises(TrainingDiverged, match="gradient norm is .*not applied"):
        optimizer_step(optimizer, parameters, max_norm)
    assert all(torch.equal(a, b) for a, b in zip(weights, parameters))
    assert str(state) == str(optimizer.state_dict())
    assert all(p.grad is None for p in parameters)  # the bad gradient does not leak into the next step


@pytest.mark.parametrize("field", ["learning_rate", "init_kl_coef", "vf_coef", "cliprange", "horizon"])
def test_rlhf_config_refuses_inf(field: str) -> None:
    with pytest.raises(ConfigError, match=f"{field}=inf.*finite"):
        PPOConfig(**{field: float("inf")})
