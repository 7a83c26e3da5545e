"""The fast engine's A2C step (fast/fused_numpy.py) against the reference (train.learn, a2c.update): gradients, whole updates,
and a whole iteration from a raw rollout with terminations, truncations and autoreset rows."""

from __future__ import annotations

import dataclasses
import math

import gymnasium
import numpy as np
import pytest
import torch

from rlcode.batch import TensorBatch
from rlcode.policy_gradient import a2c, fast
from rlcode.policy_gradient.config import A2CConfig
from rlcode.policy_gradient.optim import make_optimizer
from rlcode.policy_gradient.train import build_policy, learn

CASES = [  # (env, shared_trunk, activation, entropy_coef, normalize_advantages, optimizer, hidden_sizes)
    ("CartPole-v1", False, "tanh", 0.0, False, "rmsprop", (64, 64)),
    ("CartPole-v1", True, "relu", 0.05, True, "adam", (64, 64)),
    ("CartPole-v1", False, "relu", 0.01, False, "rmsprop", (32, 16, 8)),
    ("Pendulum-v1", False, "tanh", 0.01, False, "rmsprop", (64, 64)),
    ("Pendulum-v1", True, "tanh", 0.0, True, "adam", (64,)),
]


def _config(case, **changes) -> A2CConfig:
    env_id, shared, activation, entropy, normalize, optimizer, hidden = case
    return A2CConfig(env_id=env_id, shared_trunk=shared, activation=activation, entropy_coef=entropy,
                     normalize_advantages=normalize, optimizer=optimizer, hidden_sizes=hidden, learning_rate=3e-3,
                     log_std_init=-0.5 if env_id == "Pendulum-v1" else None, **changes)


def _policy(config: A2CConfig, learning_rate: float | None = None):
    """(policy, optimizer, observation size, the path's learn and update), the path chosen as train.py does."""
    env = gymnasium.make(config.env_id)
    torch.manual_seed(0)
    policy = build_policy(config, env.observation_space, env.action_space)
    lr = config.learning_rate if learning_rate is None else learning_rate
    if config.fused_update:
        optimizer = fast.make_optimizer(list(policy.parameters()), config.optimizer, lr, 1e-5)
        engine = fast.Engine(policy, optimizer)
        return policy, optimizer, env.observation_space.shape[0], engine.learn, engine.a2c_update
    optimizer = make_optimizer(list(policy.parameters()), config.optimizer, lr, 1e-5)
    return policy, optimizer, env.observation_space.shape[0], learn, a2c.update


def _rollout(policy, observation_size: int, B: int = 8, T: int = 5, seed: int = 1) -> tuple[TensorBatch, torch.Tensor]:
    """A raw rollout as RolloutCollector.collect returns it, with episode ends (terminations and
    truncations) and the autoreset row after each (mask 0)."""
    g = torch.Generator().manual_seed(seed)
    ended = torch.rand(B, T, generator=g) < 0.2
    truncated = ended & (torch.rand(B, T, generator=g) < 0.5)
    mask = torch.ones(B, T)
    mask[:, 1:] = (~ended[:, :-1]).float()
    mask[0, 0] = 0.0  # the rollout may start on an autoreset step too
    actions = torch.randn(B, T, 1, generator=g) if policy.continuous else torch.randint(0, 2, (B, T), generator=g)
    rollout = TensorBatch(
        observations=torch.randn(B, T, observation_size, generator=g), actions=actions,
        rewards=torch.randn(B, T, generator=g), terminated=(ended & ~truncated).float(),
        truncated=truncated.float(), mask=mask,
    )
    return rollout, torch.randn(B, observation_size, generator=g)


@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case[:5])))
def test_gradient_equals_autograd(case):
    config = _config(case, max_grad_norm=None)
    # a zero learning rate keeps the weights, so the gradient buffers hold this rollout's gradient
    policy, optimizer, observation_size, _, _ = _policy(dataclasses.replace(config, fused_update=False), 0.0)
    optimizer = fast.make_optimizer(list(policy.parameters()), config.optimizer, 0.0, 1e-5)
    reference_config = dataclasses.replace(config, fused_update=False)
    reference, reference_optimizer, _, _, _ = _policy(reference_config, learning_rate=0.0)
    rollout, last = _rollout(policy, observation_size)
    fast_engine = fast.Engine(policy, optimizer)
    fast_engine.learn(policy, optimizer, rollout, last, config)
    engine = fast_engine.flat
    learn(reference, reference_optimizer, rollout, last, reference_config)
    reference_grads = dict(reference.named_parameters())
    names = {id(p): n for n, p in policy.named_parameters()}
    for parameter, gradient in zip(engine.parameters, engine.slices["grad"]):
        expected = reference_grads[names[id(parameter)]].grad
        assert expected is not None and expected.abs().max() > 0
        torch.testing.assert_close(gradient, expected, rtol=1e-5, atol=1e-7)


def _assert_same(runs, weight_atol: float) -> None:
    (policy, optimizer, stats), (reference, reference_optimizer, reference_stats) = runs
    for a, b in zip(policy.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=weight_atol)
    for got, want in zip(stats, reference_stats):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
    state, reference_state = optimizer.state_dict()["state"], reference_optimizer.state_dict()["state"]
    for index in reference_state:
        assert state[index].keys() == reference_state[index].keys()
        for key in reference_state[index]:
            torch.testing.assert_close(state[index][key], reference_state[index][key], rtol=1e-4, atol=1e-7)


# RMSprop and Adam divide by √v, which on the first steps turns a float-rounding difference in the
# gradient of a near-zero element into a weight difference of ~1e-5 (the step size is 3e-3)
WEIGHT_ATOL = 3e-5


@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case[:5])))
def test_rollout_updates_match_the_reference_path(case):
    runs = []
    for fused_update in (True, False):
        config = _config(case, fused_update=fused_update)
        policy, optimizer, observation_size, step, _ = _policy(config)
        stats = [step(policy, optimizer, *_rollout(policy, observation_size, seed=i), config) for i in range(3)]
        runs.append((policy, optimizer, stats))
    _assert_same(runs, WEIGHT_ATOL)  # the statistics too, the critic's explained variance included
    assert all(math.isfinite(s["value/explained_variance"]) for s in runs[0][2])
    assert {float(s["step"]) for s in runs[0][1].state_dict()["state"].values()} == {3.0}


@pytest.mark.parametrize("case", CASES[:2], ids=lambda case: "-".join(map(str, case[:5])))
def test_updates_on_prepared_rows_match_autograd(case):
    """Engine.a2c_update (rows that already hold advantages and returns) equals a2c.update."""
    runs = []
    for fused_update in (True, False):
        config = _config(case, fused_update=fused_update)
        policy, optimizer, observation_size, _, update = _policy(config)
        rollout, _ = _rollout(policy, observation_size, B=16, T=16)
        rows = 16 * 16
        batch = TensorBatch(observations=rollout.observations, actions=rollout.actions, mask=torch.ones(16, 16),
                            advantages=torch.randn(rows).view(16, 16), returns=torch.randn(rows).view(16, 16))
        runs.append((policy, optimizer, [update(policy, optimizer, batch, config) for _ in range(3)]))
    _assert_same(runs, WEIGHT_ATOL)


@pytest.mark.parametrize("fused_update", [True, False])
def test_a_rollout_of_only_autoreset_rows_changes_nothing(fused_update):
    config = _config(CASES[0], fused_update=fused_update)
    policy, optimizer, observation_size, step, _ = _policy(config)
    rollout, last = _rollout(policy, observation_size, T=1)
    rollout["mask"] = torch.zeros_like(rollout.mask)
    before = [p.detach().clone() for p in policy.parameters()]
    stats = step(policy, optimizer, rollout, last, config)
    assert stats["optim/grad_norm"] == 0.0 and stats["loss/entropy"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_numpy_views_follow_the_torch_weights():
    """The numpy step writes the same memory the ActorCritic and the optimizer read (and checkpoints save)."""
    config = _config(CASES[0])
    policy, optimizer, observation_size, step, _ = _policy(config)
    step(policy, optimizer, *_rollout(policy, observation_size), config)
    before = policy.actor_body[0].weight.detach().clone()
    step(policy, optimizer, *_rollout(policy, observation_size, seed=5), config)
    assert not torch.equal(before, policy.actor_body[0].weight)
    square_avg = optimizer.state[policy.actor_body[0].weight]["square_avg"]
    assert np.all(square_avg.numpy() >= 0) and square_avg.abs().max() > 0
