"""NEXT_STEP autoreset handled explicitly: real final observations, bootstrapping, masked reset steps."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

from rlcode.policy_gradient.envs import make_vector_env, restore_env, snapshot_env
from rlcode.policy_gradient.normalize import Normalizer
from rlcode.policy_gradient.rollout import RolloutCollector, with_policy_outputs


class Counter(gymnasium.Env):
    """Observation = steps taken so far; reward 1 per step; terminates at ``terminate_at`` if set."""

    observation_space = spaces.Box(0.0, 100.0, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, terminate_at: int | None = None) -> None:
        self.terminate_at = terminate_at
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return np.array([float(self.t)], np.float32), 1.0, terminated, False, {}


gymnasium.register("rlcode-test/Truncating-v0", entry_point=Counter, max_episode_steps=3)
gymnasium.register("rlcode-test/Terminating-v0", entry_point=lambda: Counter(terminate_at=3))


class ValueIsTenTimesObservation:
    """A stand-in policy: action 0, log-prob 0, V(s) = 10·obs."""

    continuous = False

    def act(self, observations, generator=None, deterministic=False):
        return torch.zeros(len(observations), dtype=torch.int64)

    def value(self, observations):
        return 10.0 * observations[:, 0]

    def evaluate(self, observations, actions):
        zeros = torch.zeros(len(observations))
        return zeros, zeros, self.value(observations)


def _rollout(env_id: str, steps: int):
    env = make_vector_env(env_id, 2, "sync")
    collector = RolloutCollector(env, ValueIsTenTimesObservation(), Normalizer((1,), 2, 0.99, False, False),
                                 torch.Generator().manual_seed(0))
    collector.reset(seed=0)
    batch, last = collector.collect(steps)
    return with_policy_outputs(ValueIsTenTimesObservation(), batch, last), collector


def test_truncation_keeps_the_real_final_observation_and_bootstraps_from_it():
    batch, collector = _rollout("rlcode-test/Truncating-v0", 8)
    row = {key: batch[key][0].tolist() for key in batch}
    # t:            0    1    2    3(reset step)  4    5    6    7(reset step)
    assert row["observations"] == [[0.0], [1.0], [2.0], [3.0], [0.0], [1.0], [2.0], [3.0]]
    assert row["truncated"] == [0, 0, 1, 0, 0, 0, 1, 0]
    assert row["terminated"] == [0.0] * 8
    assert row["mask"] == [1, 1, 1, 0, 1, 1, 1, 0]  # the step after an episode end is not a transition
    assert row["continues"] == [1, 1, 0, 1, 1, 1, 0, 1]
    # V(s_{t+1}); at the truncation (t=2) it is V(final observation 3) = 30, not 0 and not V(reset obs)
    assert row["next_values"][:3] == [10.0, 20.0, 30.0]
    assert row["next_values"][6] == 30.0
    assert collector.drain_episodes() == [(3.0, 3)] * 4


def test_termination_bootstraps_zero():
    batch, _ = _rollout("rlcode-test/Terminating-v0", 5)
    row = {key: batch[key][0].tolist() for key in batch}
    assert row["terminated"] == [0, 0, 1, 0, 0]
    assert row["truncated"] == [0.0] * 5
    assert row["next_values"][:3] == [10.0, 20.0, 0.0]
    assert row["mask"] == [1, 1, 1, 0, 1]


def test_vector_env_refuses_same_step_autoreset():
    from gymnasium.vector import AutoresetMode

    with pytest.raises(RuntimeError, match="NEXT_STEP"):
        make_vector_env("rlcode-test/Truncating-v0", 2, "sync", vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})


@pytest.mark.parametrize("mode", ["auto", "sync"])
def test_env_snapshot_restores_the_exact_future(mode):
    env = make_vector_env("CartPole-v1", 3, mode)
    env.reset(seed=1)
    for _ in range(40):  # some episodes end and autoreset in between
        env.step(np.array([0, 1, 1]))
    snapshot = snapshot_env(env)
    expected = [env.step(np.array([1, 0, 1]))[:4] for _ in range(30)]
    fresh = make_vector_env("CartPole-v1", 3, mode)
    fresh.reset(seed=99)
    restore_env(fresh, snapshot)
    got = [fresh.step(np.array([1, 0, 1]))[:4] for _ in range(30)]
    for a, b in zip(expected, got):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_sync_and_async_vector_envs_give_the_same_rollout():
    from rlcode.policy_gradient.actor_critic import ActorCritic

    rollouts = []
    for mode in ("sync", "async"):
        torch.manual_seed(0)
        policy = ActorCritic(4, 2, continuous=False)
        env = make_vector_env("CartPole-v1", 2, mode)
        collector = RolloutCollector(env, policy, Normalizer((4,), 2, 0.99, False, False), torch.Generator().manual_seed(0))
        collector.reset(seed=3)
        rollouts.append(collector.collect(30)[0])
        env.close()
    for key in rollouts[0]:
        torch.testing.assert_close(rollouts[0][key], rollouts[1][key], rtol=0, atol=0)


@pytest.mark.parametrize("fast_path", [False, True], ids=["reference", "fast"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_rollout_samples_actions_from_the_policy(env_id, fast_path):
    """The fast path's numpy actor equals the torch one, and sampled actions follow π on both paths:
    Categorical frequencies match softmax(logits); Gaussian actions have the policy's mean and std."""
    from rlcode.policy_gradient import fast
    from rlcode.policy_gradient.config import PPOConfig
    from rlcode.policy_gradient.train import build_policy

    env = make_vector_env(env_id, 16, "sync")
    config = PPOConfig(env_id=env_id, log_std_init=-1.0 if env_id == "Pendulum-v1" else None)
    torch.manual_seed(0)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    observations = np.random.default_rng(0).normal(size=(5, env.single_observation_space.shape[0])).astype(np.float32)
    with torch.no_grad():
        expected = policy.policy_output(torch.from_numpy(observations)).numpy()
    engine = fast.Engine(policy, fast.make_optimizer(list(policy.parameters()), "adam", 1e-3, 1e-5))
    np.testing.assert_allclose(engine.numpy.policy_output(observations), expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # a state-independent policy: zero head weights, chosen biases
        policy.policy_head.weight.zero_()
        policy.policy_head.bias.copy_(torch.tensor([0.4, -0.6]) if env_id == "CartPole-v1" else torch.tensor([0.3]))
    make = engine.collector if fast_path else RolloutCollector
    collector = make(env, policy, Normalizer(env.single_observation_space.shape, 16, 0.99, False, False),
                     torch.Generator().manual_seed(0))
    collector.reset(seed=0)
    actions = collector.collect(500)[0].actions.numpy()  # 8000 samples
    if env_id == "CartPole-v1":
        probability = float(torch.softmax(torch.tensor([0.4, -0.6]), 0)[1])
        assert abs((actions == 1).mean() - probability) < 0.02  # ~4 standard errors
    else:  # unclipped Gaussian samples, N(0.3, e^-1)
        assert abs(actions.mean() - 0.3) < 0.02 and abs(actions.std() - np.exp(-1.0)) < 0.02
    env.close()
