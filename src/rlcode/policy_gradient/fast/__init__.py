"""The fast path: the reference's contracts, computed on flat buffers with hand-written backward passes.

Imported only by train.py (and tests), which chooses it once per run (``config.fused_update``) and
holds the ``Engine``; the reference files (ppo.py, a2c.py, rollout.py, actor_critic.py) never see it.

- ``Engine.collector``: rollout.RolloutCollector with the actor in numpy on views of the weights and
  the sampling noise of the whole rollout drawn up front (a rollout step is 8 rows: a numpy op costs
  ~1 µs, a torch one ~5 µs);
- ``Engine.with_policy_outputs``: rollout.with_policy_outputs with one stacked forward (fused.py);
- ``Engine.ppo_update``: ppo.update with the backward written out and a flat Adam (fused.py);
- ``Engine.a2c_update`` and ``Engine.learn`` for A2C: values, GAE and the step in one numpy pass
  (fused_numpy.py);
- optim.py: Adam and RMSprop without ``torch.optim.Optimizer``'s one-second first import, saving
  torch.optim's state_dict format (checkpoints load either way).

tests/policy_gradient/test_fused*.py hold every piece equal to the reference.
"""

from __future__ import annotations

from typing import Any

import torch

from rlcode.batch import TensorBatch
from rlcode.policy_gradient import ppo
from rlcode.policy_gradient.actor_critic import ActorCritic
from rlcode.policy_gradient.config import A2CConfig, PPOConfig
from rlcode.policy_gradient.fast import fused, fused_numpy
from rlcode.policy_gradient.fast.optim import Optimizer, make_optimizer
from rlcode.policy_gradient.normalize import Normalizer
from rlcode.policy_gradient.rollout import RolloutCollector, rollout_statistics, valid_rows, with_outputs

__all__ = ["Engine", "make_optimizer", "unsupported_reason"]


def unsupported_reason(policy: ActorCritic, optimizer: Optimizer) -> str | None:
    """Why the engine cannot run this policy/optimizer pair (None when it can)."""
    return fused.unsupported_reason(policy, optimizer)


class Engine:
    """The fast path of one run: a FlatMLP over the policy and its optimizer (fast/optim.py's Adam or
    RMSprop), and numpy views of it. Held by the run; the policy and optimizer stay the source of truth
    (checkpoints save them; their tensors are views of the engine's buffers)."""

    def __init__(self, policy: ActorCritic, optimizer: Optimizer) -> None:
        reason = unsupported_reason(policy, optimizer)
        if reason is not None:
            raise ValueError(f"the fast engine cannot run this policy: {reason}")
        self.flat = fused.FlatMLP(policy, optimizer)
        self.flat.bind()
        self.numpy = fused_numpy.NumpyMLP(self.flat)

    def _bound(self, policy: ActorCritic, optimizer: Any) -> fused.FlatMLP:
        """The FlatMLP, bound again if something replaced the tensors (a checkpoint load)."""
        assert policy is self.flat.policy and optimizer is self.flat.optimizer, "an engine serves one policy"
        self.flat.bind()
        return self.flat

    def collector(self, env: Any, policy: ActorCritic, normalizer: Normalizer,
                  generator: torch.Generator) -> RolloutCollector:
        return NumpyRolloutCollector(env, policy, normalizer, generator, self.numpy)

    def with_policy_outputs(self, policy: ActorCritic, batch: TensorBatch, last_observations: torch.Tensor) -> TensorBatch:
        """rollout.with_policy_outputs, with the engine's stacked forward."""
        engine = self._bound(policy, self.flat.optimizer)
        with torch.no_grad():
            observations, actions = batch.observations.flatten(0, 1), batch.actions.flatten(0, 1)
            outputs = fused.policy_outputs(engine, observations, actions, last_observations)
        return with_outputs(batch, *outputs)

    def ppo_update(self, policy: ActorCritic, optimizer: Any, batch: TensorBatch, config: PPOConfig,
                   clip_range: float | None = None, generator: torch.Generator | None = None) -> dict[str, float]:
        """ppo.update, fused: the same minibatches (same permutations), statistics and early stop."""
        engine = self._bound(policy, optimizer)
        clip = config.clip_range if clip_range is None else clip_range
        flat = valid_rows(batch, ppo.KEYS)
        history, stopped_early = fused.ppo_update(engine, _prepared(ppo.minibatches(flat, config, generator),
                                                                    config, engine), config, clip)
        result = {key: float(values.mean()) for key, values in history.items()}
        result["update/early_stop"] = float(stopped_early)
        result["policy/clip_range"] = clip
        return result

    def a2c_update(self, policy: ActorCritic, optimizer: Any, batch: TensorBatch, config: A2CConfig) -> dict[str, float]:
        """a2c.update, in numpy."""
        self._bound(policy, optimizer)
        flat = valid_rows(batch, ("observations", "actions", "advantages", "returns"))
        if len(flat.returns) == 0:
            return {"loss/policy": 0.0, "loss/value": 0.0, "optim/grad_norm": 0.0}
        return fused_numpy.a2c_update(self.numpy, flat, config)

    def learn(self, policy: ActorCritic, optimizer: Any, rollout: TensorBatch, last_observations: torch.Tensor,
              config: Any, **options: Any) -> dict[str, float]:
        """train.learn: one update from a raw rollout. For A2C one numpy forward serves the values (for
        GAE) and the gradient step."""
        if isinstance(config, A2CConfig):
            self._bound(policy, optimizer)
            return fused_numpy.a2c_rollout_update(self.numpy, rollout, last_observations, config)
        batch = ppo.prepare(self.with_policy_outputs(policy, rollout, last_observations), config)
        return self.ppo_update(policy, optimizer, batch, config, **options) | rollout_statistics(batch)


def _prepared(minibatches: Any, config: PPOConfig, engine: fused.FlatMLP) -> Any:
    """fused.prepare on each minibatch, once per distinct minibatch (one minibatch repeats every epoch)."""
    rows, prepared = None, None
    for minibatch in minibatches:
        if minibatch is not rows:
            rows, prepared = minibatch, fused.prepare(minibatch, config, engine)
        yield prepared


class NumpyRolloutCollector(RolloutCollector):
    """RolloutCollector whose sampler runs the actor in numpy (NumpyMLP.policy_output), with the noise of
    the whole rollout drawn up front from the run's generator: Gumbel noise for Categorical actions
    (argmax(logits + Gumbel) ~ softmax(logits); −log(Exp(1)) is Gumbel(0, 1)), N(0, σ²) for Gaussian ones."""

    def __init__(self, env: Any, policy: ActorCritic, normalizer: Normalizer, generator: torch.Generator,
                 mlp: fused_numpy.NumpyMLP) -> None:
        super().__init__(env, policy, normalizer, generator)
        self.mlp = mlp

    def sampler(self, num_steps: int) -> Any:
        shape = (num_steps, self.num_envs, self.action_size)
        actor = self.mlp.policy_output
        if self.continuous:
            assert self.policy.log_std is not None
            noise = torch.randn(shape, generator=self.generator).numpy() * self.policy.log_std.detach().exp().numpy()
            return lambda observation, t: actor(observation) + noise[t]
        gumbel = -torch.empty(shape).exponential_(generator=self.generator).log_().numpy()
        return lambda observation, t: (actor(observation) + gumbel[t]).argmax(axis=1)
