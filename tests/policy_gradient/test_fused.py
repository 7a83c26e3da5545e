"""The fast engine's PPO step (hand-written backward, flat Adam) against the reference ppo.update."""

from __future__ import annotations

import copy
import dataclasses

import gymnasium
import pytest
import torch

from rlcode.batch import TensorBatch
from rlcode.policy_gradient import fast, ppo
from rlcode.policy_gradient.config import PPOConfig
from rlcode.policy_gradient.fast import fused
from rlcode.policy_gradient.optim import make_optimizer
from rlcode.policy_gradient.train import build_policy

CASES = [  # (env, shared_trunk, activation, value_clip_range, entropy_coef, minibatch_size, hidden_sizes)
    ("CartPole-v1", False, "tanh", None, 0.0, 256, (64, 64)),
    ("CartPole-v1", True, "relu", 0.2, 0.01, 64, (64, 64)),
    ("CartPole-v1", False, "relu", None, 0.05, 128, (32, 16, 8)),
    ("Pendulum-v1", False, "tanh", 0.2, 0.01, 128, (64, 64)),
    ("Pendulum-v1", True, "tanh", None, 0.0, 256, (64,)),
]


def _setup(case, fused_update: bool):
    env_id, shared, activation, value_clip, entropy, minibatch, hidden = case
    config = PPOConfig(env_id=env_id, shared_trunk=shared, activation=activation, value_clip_range=value_clip,
                       entropy_coef=entropy, minibatch_size=minibatch, hidden_sizes=hidden, num_epochs=4,
                       fused_update=fused_update, log_std_init=-0.5 if env_id == "Pendulum-v1" else None)
    env = gymnasium.make(env_id)
    torch.manual_seed(0)
    policy = build_policy(config, env.observation_space, env.action_space)
    optimizer = (fast.make_optimizer if fused_update else make_optimizer)(list(policy.parameters()), "adam", 3e-3, 1e-5)
    generator = torch.Generator().manual_seed(1)
    rows, obs = 256, env.observation_space.shape[0]
    continuous = policy.continuous
    actions = torch.randn(rows, 1, generator=generator) if continuous else torch.randint(0, 2, (rows,), generator=generator)
    observations = torch.randn(rows, obs, generator=generator)
    with torch.no_grad():
        old_log_probs, _, values = policy.evaluate(observations, actions)
    batch = TensorBatch(
        observations=observations, actions=actions,
        old_log_probs=old_log_probs + 0.3 * torch.randn(rows, generator=generator),  # ratios away from 1
        values=values + 0.3 * torch.randn(rows, generator=generator),  # so value clipping bites
        advantages=torch.randn(rows, generator=generator), returns=torch.randn(rows, generator=generator),
        mask=torch.ones(rows),
    )
    batch = TensorBatch({key: value.view(8, 32, *value.shape[1:]) for key, value in batch.items()})
    return config, policy, optimizer, batch


@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case[:5])))
def test_fused_gradient_equals_autograd(case):
    config, policy, optimizer, batch = _setup(case, fused_update=True)
    # one step on the whole batch (one minibatch, one epoch), no clip: ppo.update's loss, its gradient
    config = dataclasses.replace(config, max_grad_norm=None, minibatch_size=256, num_epochs=1)
    flat = TensorBatch({key: batch[key] for key in ppo.KEYS}).flatten()
    reference = copy.deepcopy(policy)
    reference_optimizer = make_optimizer(list(reference.parameters()), "adam", 1e-3, 1e-5)
    reference_optimizer.step = lambda: None  # type: ignore[method-assign]  # keep the gradients, move nothing
    ppo.update(reference, reference_optimizer, batch, config, clip_range=0.2)
    engine = fast.Engine(policy, optimizer).flat
    terms = fused.gradients(engine, fused.prepare(flat, config, engine), config, 0.2)
    assert terms is not None
    reference_grads = dict(reference.named_parameters())
    names = {id(p): n for n, p in policy.named_parameters()}
    for parameter, gradient in zip(engine.parameters, engine.slices["grad"]):
        expected = reference_grads[names[id(parameter)]].grad
        assert expected is not None
        torch.testing.assert_close(gradient, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case[:5])))
def test_fused_updates_match_autograd_updates(case):
    results = []
    for fused_update in (True, False):
        config, policy, optimizer, batch = _setup(case, fused_update)
        update = fast.Engine(policy, optimizer).ppo_update if fused_update else ppo.update
        stats = [update(policy, optimizer, batch, config, generator=torch.Generator().manual_seed(i)) for i in range(3)]
        results.append((policy, optimizer, stats))
    # value/clip_fraction counts ties V_clipped == V, decided by the last bit of V
    _assert_runs_match(*results, stat_tolerance=lambda key: (0.02, 0.02) if key == "value/clip_fraction" else (1e-5, 1e-5))
    for state in (optimizer.state_dict()["state"] for _, optimizer, _ in results):
        assert {float(values["step"]) for values in state.values()} == {3 * 4 * (256 // case[5])}


def _assert_runs_match(fused_run, autograd_run, stat_tolerance) -> None:
    """Same weights, statistics (stat_tolerance(key) = (rel, abs)) and optimizer state (moments, step
    counts) after the same updates."""
    (fused_policy, fused_optimizer, fused_stats), (policy, optimizer, stats) = fused_run, autograd_run
    for a, b in zip(fused_policy.parameters(), policy.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for fused_update, update in zip(fused_stats, stats):
        assert fused_update.keys() == update.keys()
        for key in update:
            relative, absolute = stat_tolerance(key)
            assert fused_update[key] == pytest.approx(update[key], rel=relative, abs=absolute), key
    fused_state, state = fused_optimizer.state_dict()["state"], optimizer.state_dict()["state"]
    assert fused_state.keys() == state.keys()
    for index in state:
        assert fused_state[index].keys() == state[index].keys()
        for key in state[index]:
            torch.testing.assert_close(fused_state[index][key], state[index][key], rtol=1e-4, atol=1e-7)


def test_parameters_stay_usable_after_load_state_dict_and_fallbacks():
    config, policy, optimizer, batch = _setup(CASES[0], fused_update=True)
    engine = fast.Engine(policy, optimizer)
    engine.ppo_update(policy, optimizer, batch, config)
    assert engine.flat.is_bound()
    # a checkpoint load gives the optimizer new state tensors: the next update binds again, keeping them
    state = copy.deepcopy(optimizer.state_dict())
    optimizer.load_state_dict(state)
    assert not engine.flat.is_bound()
    before = [p.detach().clone() for p in policy.parameters()]
    engine.ppo_update(policy, optimizer, batch, config)
    assert engine.flat.is_bound() and any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert float(next(iter(optimizer.state.values()))["step"]) == 2 * 4  # 4 epochs of one minibatch per update
    # the reference path steps the same bound optimizer and keeps one step count for all
    ppo.update(policy, optimizer, batch, config)
    assert {float(s["step"]) for s in optimizer.state.values()} == {3 * 4}
    sgd = torch.optim.SGD(list(policy.parameters()), lr=1e-3)
    assert "SGD" in str(fast.unsupported_reason(policy, sgd))  # such optimizers take the reference path
    with pytest.raises(ValueError, match="SGD"):
        fast.Engine(policy, sgd)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3]], ids=lambda case: "-".join(map(str, case[:5])))
def test_engine_policy_outputs_equal_actor_critic_evaluate(case):
    config, policy, optimizer, batch = _setup(case, fused_update=True)
    observations, actions = batch.observations.flatten(0, 1), batch.actions.flatten(0, 1)
    last = observations[:8] + 1.0
    engine = fast.Engine(policy, optimizer)
    engine.ppo_update(policy, optimizer, batch, config)
    outputs = fused.policy_outputs(engine.flat, observations, actions, last)
    with torch.no_grad():
        expected = (*policy.evaluate(observations, actions), policy.value(last))
    for got, want in zip(outputs, expected):
        torch.testing.assert_close(got, want.expand_as(got), rtol=1e-5, atol=1e-6)


def test_fast_rollout_collector_takes_the_reference_actions():
    """For Discrete actions the numpy actor with Gumbel noise drawn up front samples what ActorCritic.act
    samples step by step from the same generator (exponential_ draws one stream either way). Gaussian
    noise differs: torch.randn draws 16 or more numbers with another algorithm than fewer."""
    from rlcode.policy_gradient.envs import make_vector_env
    from rlcode.policy_gradient.normalize import Normalizer
    from rlcode.policy_gradient.rollout import RolloutCollector

    for case in (CASES[0], CASES[2]):
        config, policy, optimizer, _ = _setup(case, fused_update=True)
        engine = fast.Engine(policy, optimizer)
        rollouts = []
        for make in (engine.collector, RolloutCollector):
            env = make_vector_env(case[0], 4, "sync")
            collector = make(env, policy, Normalizer(env.single_observation_space.shape, 4, 0.99, False, False),
                             torch.Generator().manual_seed(3))
            collector.reset(seed=0)
            rollouts.append(collector.collect(16))
            env.close()
        (fast_batch, fast_last), (batch, last) = rollouts
        torch.testing.assert_close(fast_batch.actions, batch.actions, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fast_batch.observations, batch.observations, rtol=1e-5, atol=1e-5)
