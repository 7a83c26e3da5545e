"""PPO's gradient steps for MLP actor-critics, with the backward pass written out by hand, and the
flat-buffer engine (``FlatMLP``) that A2C's numpy step (fused_numpy.py) runs on too.

Why: with 64-unit layers and 256-row minibatches, one autograd step is ~100 small eager ops (~1.1 ms
on one core) for ~13 MFLOP of arithmetic (~0.1 ms). Here

- every parameter, its gradient and its optimizer moments are views into flat buffers, so the global
  gradient norm, the clip and the Adam or RMSprop step are a few ops in all (Adam is the same
  ``torch._fused_adam_`` kernel that optim.Adam calls, so the update arithmetic is unchanged);
- the actor's and critic's trunks are stacked as ``[2, N, H]`` activations: one batched matmul per
  layer for both networks, forward and backward;
- the gradients of the clipped surrogate, value and entropy terms with respect to the heads' outputs
  are written in closed form (derived next to each line), matching autograd's conventions at ties.

The autograd versions in ppo.py and a2c.py stay the reference: tests/policy_gradient/test_fused.py checks
gradients and whole updates of these against them. The ``ActorCritic`` and optimizer objects stay
the source of truth (checkpoints and the autograd path use them unchanged); ``FlatMLP.bind`` just
makes their tensors views of the flat buffers, and binds again whenever something replaced them (a
checkpoint load gives the optimizer new state tensors). The engine that owns a FlatMLP
(``fast.Engine``) is held by the run, never stored on the module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from rlcode.batch import TensorBatch
from rlcode.errors import TrainingDiverged
from rlcode.masked import masked_whiten
from rlcode.policy_gradient.actor_critic import ActorCritic
from rlcode.policy_gradient.fast.optim import Adam, Optimizer, RMSprop

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def unsupported_reason(policy: ActorCritic, optimizer: Optimizer) -> str | None:
    """Why the fused step cannot run this policy/optimizer pair (None when it can)."""
    if type(optimizer) not in (Adam, RMSprop):
        return f"the optimizer is a {type(optimizer).__name__}, not rlcode's Adam or RMSprop"
    options = optimizer.param_groups[0]
    if options["weight_decay"] or options.get("amsgrad") or options.get("maximize") or options.get("momentum") \
            or options.get("centered"):
        return "the optimizer uses weight decay, amsgrad, maximize, momentum or centering"
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in policy.parameters()):
        return "parameters are not float32 on the CPU"
    if {id(p) for p in options["params"]} != {id(p) for p in policy.parameters()}:
        return "the optimizer does not hold exactly the policy's parameters"
    return None


class FlatMLP:
    """An ActorCritic and its Adam or RMSprop optimizer over flat buffers: weights, gradients, moments.

    Layout, trunks T = 2 (separate actor and critic) or 1 (shared): per hidden layer k a weight block
    [T, out, in] then a bias block [T, out]; then the policy head, the value head and log_std.
    """

    def __init__(self, policy: ActorCritic, optimizer: Optimizer) -> None:
        self.policy, self.optimizer = policy, optimizer
        bodies = [policy.actor_body] if policy.shared_trunk else [policy.actor_body, policy.critic_body]
        self.trunks = len(bodies)
        self.activation = "tanh" if policy.activation is torch.tanh else "relu"
        # (block shape, its parameters, stacked): a stacked block [T, ...] holds one parameter per trunk
        blocks: list[tuple[tuple[int, ...], list[torch.Tensor], bool]] = []
        for layers in zip(*bodies):
            blocks.append(((self.trunks, *layers[0].weight.shape), [layer.weight for layer in layers], True))
            blocks.append(((self.trunks, *layers[0].bias.shape), [layer.bias for layer in layers], True))
        heads = [policy.policy_head.weight, policy.policy_head.bias, policy.value_head.weight, policy.value_head.bias]
        if policy.log_std is not None:
            heads.append(policy.log_std)
        blocks += [(tuple(p.shape), [p], False) for p in heads]
        self.parameters = [p for _, params, _ in blocks for p in params]
        total = sum(math.prod(shape) for shape, _, _ in blocks)
        self.state_keys: tuple[str, ...] = optimizer.state_keys  # type: ignore[attr-defined]
        # flat buffers: weights, gradients, and the optimizer's moments (exp_avg, ... or square_avg)
        self.buffers = {name: torch.zeros(total) for name in ("flat", "grad", *self.state_keys)}
        self.flat, self.grad = self.buffers["flat"], self.buffers["grad"]
        self.steps = torch.zeros(len(self.parameters))  # each parameter's optimizer 'step', as views
        # for each buffer: its blocks (what the maths uses) and its per-parameter slices (what torch sees)
        self.blocks: dict[str, list[torch.Tensor]] = {name: [] for name in self.buffers}
        self.slices: dict[str, list[torch.Tensor]] = {name: [] for name in self.buffers}
        offset = 0
        for shape, _, stacked in blocks:
            size = math.prod(shape)
            for name in self.blocks:
                block = self.buffers[name][offset : offset + size].view(shape)
                self.blocks[name].append(block)
                self.slices[name].extend(block.unbind(0) if stacked else [block])
            offset += size
        self.layers = len(policy.actor_body)
        # views the maths reads, made once: weights [T, out, in] and transposes, biases as [T, 1, out]
        weights, grads = self.blocks["flat"], self.blocks["grad"]
        self.weights = weights[0 : 2 * self.layers : 2]
        self.weights_t = [w.transpose(1, 2) for w in self.weights]
        self.bias_rows = [b.unsqueeze(1) for b in weights[1 : 2 * self.layers : 2]]
        self.grad_weights, self.grad_biases = grads[0 : 2 * self.layers : 2], grads[1 : 2 * self.layers : 2]
        head = 2 * self.layers
        self.policy_weight, self.policy_bias = weights[head], weights[head + 1]
        self.policy_weight_t = self.policy_weight.t()
        self.value_weight, self.value_bias = weights[head + 2][0], weights[head + 3]  # [H], [1]
        self.log_std = weights[head + 4] if policy.log_std is not None else None
        names = ["policy_weight", "policy_bias", "value_weight", "value_bias", "log_std"]
        self.grad_blocks = dict(zip(names, grads[head:]))
        self.grad_blocks["value_weight"] = self.grad_blocks["value_weight"][0]
        self._workspaces: dict[int, dict[str, list[torch.Tensor]]] = {}
        self._capacity, self._storage = 0, [torch.empty(0)]
        self._pointers = [view.data_ptr() for view in self.slices["flat"]]
        self._bound_state: dict[torch.Tensor, dict[str, torch.Tensor]] | None = None

    # ---- binding: the torch objects' tensors become views of the flat buffers -----------------

    def weights_bound(self) -> bool:
        """Whether every parameter is still the view made by ``bind`` (``Module.to`` would replace them)."""
        return all(p.data_ptr() == pointer for p, pointer in zip(self.parameters, self._pointers))

    def is_bound(self) -> bool:
        """Weights bound, and the optimizer's state is the dict ``bind`` filled (a load replaces it)."""
        return self.optimizer.state is self._bound_state and self.weights_bound()

    def bind(self) -> None:
        """Copy current weights and optimizer state into the buffers and point the torch objects at them."""
        if self.is_bound():
            return
        state = self.optimizer.state
        with torch.no_grad():
            for index, parameter in enumerate(self.parameters):
                self.slices["flat"][index].copy_(parameter.data)
                parameter.data = self.slices["flat"][index]
                entry = state.get(parameter) or {}
                for key in self.state_keys:
                    self.slices[key][index].copy_(entry[key] if key in entry else torch.zeros(()))
                self.steps[index] = float(entry["step"]) if "step" in entry else 0.0
                state[parameter] = {"step": self.steps[index],
                                    **{key: self.slices[key][index] for key in self.state_keys}}
        if len(set(self.steps.tolist())) > 1:
            raise RuntimeError("the fused update needs one optimizer step count for all parameters; "
                               "set fused_update=False for an optimizer stepped on a subset of them.")
        self._bound_state = state

    # ---- one gradient step --------------------------------------------------------------------

    def workspace(self, rows: int) -> dict[str, list[torch.Tensor]]:
        """Activation and activation-gradient buffers [T, rows, H] per hidden layer, reused across steps.

        Reusing memory matters: a fresh [2, 256, 64] tensor is 128 KiB, the size at which malloc
        switches to mmap, and page-faulting new memory on every op costs more than the op. Every row
        count gets contiguous views into the same storage (steps run one after another).
        """
        if rows not in self._workspaces:
            sizes = [int(bias.shape[-1]) for bias in self.bias_rows]
            if rows > self._capacity:
                self._capacity = max(rows, 2 * self._capacity)
                self._storage = [torch.empty(2 * self.trunks * self._capacity * size) for size in sizes]
                self._workspaces.clear()
            hidden = [buffer[: self.trunks * rows * size].view(self.trunks, rows, size)
                      for buffer, size in zip(self._storage, sizes)]
            d_hidden = [buffer[self.trunks * self._capacity * size :][: self.trunks * rows * size]
                        .view(self.trunks, rows, size) for buffer, size in zip(self._storage, sizes)]
            self._workspaces[rows] = {
                "hidden": hidden, "d_hidden": d_hidden, "d_hidden_t": [d.transpose(1, 2) for d in d_hidden],
                # views of the last layer by trunk (the same tensor twice with a shared trunk)
                "features": [hidden[-1][0], hidden[-1][-1], hidden[-1][-1].t()],
                "d_features": [d_hidden[-1][0], d_hidden[-1][-1]],
            }
        return self._workspaces[rows]

    def forward(self, inputs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """From observations expanded to [T, N, obs]: activations per layer [T, N, H] (the input
        first), the policy head's output [N, A] and values [N]."""
        space = self.workspace(inputs.shape[1])
        hidden = space["hidden"]
        activations = [inputs]
        for k in range(self.layers):
            torch.baddbmm(self.bias_rows[k], activations[-1], self.weights_t[k], out=hidden[k])
            activations.append(hidden[k].tanh_() if self.activation == "tanh" else hidden[k].relu_())
        actor_features, critic_features, _ = space["features"]
        output = torch.addmm(self.policy_bias, actor_features, self.policy_weight_t)
        values = torch.addmv(self.value_bias, critic_features, self.value_weight)
        return activations, output, values

    def backward(self, activations: list[torch.Tensor], d_output: torch.Tensor, d_values: torch.Tensor,
                 d_log_std: torch.Tensor | None) -> None:
        """Write dL/dθ into self.grad, given dL/d(head output) [N, A], dL/dV [N] and dL/dlog_std [A]."""
        space = self.workspace(len(d_values))
        d_hidden, d_hidden_t = space["d_hidden"], space["d_hidden_t"]
        actor_features, _, critic_features_t = space["features"]
        grads = self.grad_blocks
        torch.mm(d_output.t(), actor_features, out=grads["policy_weight"])
        torch.sum(d_output, 0, out=grads["policy_bias"])
        torch.mv(critic_features_t, d_values, out=grads["value_weight"])
        torch.sum(d_values, 0, keepdim=True, out=grads["value_bias"])
        if d_log_std is not None:
            grads["log_std"].copy_(d_log_std)
        # dL/d(last activations): the actor's through the policy head, the critic's through the value head
        d_actor, d_critic = space["d_features"]
        torch.outer(d_values, self.value_weight, out=d_critic)
        if self.trunks == 2:
            torch.mm(d_output, self.policy_weight, out=d_actor)
        else:
            d_actor.addmm_(d_output, self.policy_weight)
        for k in reversed(range(self.layers)):
            d_pre = d_hidden[k]  # dL/d(pre-activation), in place of dL/d(activation)
            if self.activation == "tanh":  # d tanh(z)/dz = 1 - tanh(z)^2
                torch.ops.aten.tanh_backward.grad_input(d_pre, activations[k + 1], grad_input=d_pre)
            else:  # d relu(z)/dz = 1 where relu(z) > 0
                torch.ops.aten.threshold_backward.grad_input(d_pre, activations[k + 1], 0.0, grad_input=d_pre)
            torch.bmm(d_hidden_t[k], activations[k], out=self.grad_weights[k])
            torch.sum(d_pre, 1, out=self.grad_biases[k])
            if k > 0:
                torch.bmm(d_pre, self.weights[k], out=d_hidden[k - 1])

    def optimizer_step(self, max_grad_norm: float | None) -> float:
        """Global-norm clip and one Adam or RMSprop step over all parameters; returns the norm before
        clipping. The arithmetic is optim.Adam's / optim.RMSprop's, on the flat buffers at once."""
        norm = float(torch.linalg.vector_norm(self.grad))
        scale = clip_coefficient(norm, max_grad_norm)
        if scale is not None:
            self.grad.mul_(scale)
        options = self.optimizer.param_groups[0]
        self.steps.add_(1.0)
        if "exp_avg" in self.buffers:  # Adam
            beta1, beta2 = options["betas"]
            torch._fused_adam_(
                [self.flat], [self.grad], [self.buffers["exp_avg"]], [self.buffers["exp_avg_sq"]], [],
                [self.steps[0]], lr=float(options["lr"]), beta1=float(beta1), beta2=float(beta2),
                weight_decay=0.0, eps=float(options["eps"]), amsgrad=False, maximize=False,
            )
        else:  # RMSprop: v <- α v + (1 - α) g², θ <- θ - lr g / (√v + ε)
            alpha, square_avg = float(options["alpha"]), self.buffers["square_avg"]
            square_avg.mul_(alpha).addcmul_(self.grad, self.grad, value=1 - alpha)
            self.flat.addcdiv_(self.grad, square_avg.sqrt().add_(float(options["eps"])), value=-float(options["lr"]))
        return norm


def clip_coefficient(norm: float, max_grad_norm: float | None) -> float | None:
    """What clip_grad_norm_ multiplies the gradients by (None: leave them); raises on a non-finite norm."""
    if not math.isfinite(norm):
        raise TrainingDiverged(
            f"the gradient norm is {norm}; this gradient step was not applied. Lower learning_rate, "
            "enable normalize_observations/normalize_rewards, or check the environment's rewards for inf/nan."
        )
    if max_grad_norm is not None and norm + 1e-6 > max_grad_norm:
        return max_grad_norm / (norm + 1e-6)
    return None


def policy_outputs(engine: FlatMLP, observations: torch.Tensor, actions: torch.Tensor,
                   last_observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log π(a|s), entropy, V(s)) [N] and V(last observations) [B], as ActorCritic.evaluate and
    .value give them, with the engine's stacked forward (a third of their cost)."""
    rows = len(observations)
    inputs = torch.cat([observations, last_observations])
    _, output, values = engine.forward(inputs.expand(engine.trunks, *inputs.shape))
    log_probs, cache = _log_probs(engine, output[:rows], actions if engine.log_std is not None else actions.long().unsqueeze(1))
    if engine.log_std is not None:
        entropy = (0.5 + _LOG_SQRT_2PI + engine.log_std).sum().expand(rows)
    else:
        (all_log_probs,) = cache
        entropy = -(all_log_probs.exp() * all_log_probs).sum(1)
    return log_probs, entropy, values[:rows], values[rows:]


def ppo_update(
    engine: FlatMLP, minibatches: Iterator[TensorBatch], config: Any, clip: float
) -> tuple[dict[str, torch.Tensor], bool]:
    """ppo.update's minibatch steps (minibatches from ``prepare``), fused; returns (statistics per
    step [S], stopped early)."""
    steps: list[dict[str, torch.Tensor]] = []  # per step, the per-row terms that statistics average
    norms: list[float] = []
    stopped_early = False
    for minibatch in minibatches:
        terms = gradients(engine, minibatch, config, clip)
        if terms is None:
            stopped_early = True
            break
        steps.append(terms)
        norms.append(engine.optimizer_step(config.max_grad_norm))
    if not steps:
        return {}, stopped_early
    return _statistics(steps) | {"optim/grad_norm": torch.tensor(norms)}, stopped_early


def _statistics(steps: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """ppo.update's per-step statistics [S], from the per-row terms kept by ``gradients``
    (computed once per update rather than a dozen small ops per step)."""

    def per_step(names: tuple[str, ...], row_values: Any) -> torch.Tensor:
        columns = [tuple(step[name] for name in names) for step in steps]
        if len({column[0].shape[0] for column in columns}) == 1:  # all steps alike: at once, [S, N]
            return row_values(*(torch.stack(parts) for parts in zip(*columns))).mean(-1)
        return torch.stack([row_values(*column).mean() for column in columns])

    statistics = {
        "loss/policy": per_step(("unclipped", "clipped"), torch.maximum),
        "policy/approx_kl": per_step(("log_ratio",), lambda log_ratio: torch.expm1(log_ratio) - log_ratio),  # k3
        "policy/approx_kl_k2": per_step(("log_ratio",), lambda log_ratio: 0.5 * log_ratio.square()),
        "policy/clip_fraction": per_step(("kept",), lambda kept: (~kept).float()),
    }
    if "value_loss" in steps[0]:  # value clipping
        statistics["loss/value"] = per_step(("value_loss",), lambda value_loss: value_loss)
        statistics["value/clip_fraction"] = per_step(("value_clipped",), lambda clipped: clipped.float())
    else:
        statistics["loss/value"] = per_step(("error",), torch.square)
        statistics["value/clip_fraction"] = torch.zeros(len(steps))
    return statistics


def prepare(minibatch: TensorBatch, config: Any, engine: FlatMLP) -> TensorBatch:
    """What a minibatch step needs that does not depend on the weights (reused across epochs).

    Advantages are whitened here when config.normalize_advantages (over the minibatch, as SB3)."""
    advantages = minibatch.advantages
    if config.normalize_advantages and len(advantages) > 1:
        advantages = masked_whiten(advantages)
    prepared = TensorBatch(
        inputs=minibatch.observations.expand(engine.trunks, *minibatch.observations.shape),
        negative_advantages=-advantages, returns=minibatch.returns,
    )
    if "old_log_probs" in minibatch:  # PPO
        prepared["old_log_probs"], prepared["old_values"] = minibatch.old_log_probs, minibatch["values"]
    if engine.policy.continuous:
        prepared["actions"] = minibatch.actions
    else:
        actions = minibatch.actions.long()
        prepared["actions"] = actions.unsqueeze(-1)
        prepared["one_hot"] = torch.nn.functional.one_hot(actions, engine.policy.policy_head.out_features).float()
    return prepared


def _log_probs(engine: FlatMLP, output: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """log π(a|s) [N] from the policy head's output, and what ``_head_gradients`` reuses."""
    log_std = engine.log_std
    if log_std is not None:  # Box actions: log N(a; μ, σ) summed over action dims
        inverse_std = torch.exp(-log_std)
        z = (actions - output) * inverse_std
        return (-0.5 * z.square() - log_std - _LOG_SQRT_2PI).sum(1), (z, inverse_std)
    all_log_probs = torch.log_softmax(output, 1)
    return all_log_probs.gather(1, actions).squeeze(1), (all_log_probs,)


def _head_gradients(engine: FlatMLP, minibatch: TensorBatch, cache: tuple[torch.Tensor, ...], d_log_probs: torch.Tensor,
                    entropy_coef: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """dL/d(policy head output) [N, A] and dL/dlog_std [A] (None for Categorical policies), for a loss
    L = Σ d_log_probs·log π(a|s) − entropy_coef·mean(entropy)."""
    if engine.log_std is not None:
        # d log π / dμ = z / σ; d log π / d log σ = z^2 - 1; the entropy Σ(½ + log √(2π) + log σ) adds 1 per dim
        z, inverse_std = cache
        d_output = (d_log_probs.unsqueeze(1) * z) * inverse_std
        return d_output, (d_log_probs.unsqueeze(1) * (z.square() - 1.0)).sum(0) - entropy_coef
    # d log softmax(x)_a / dx = onehot(a) - softmax(x)
    (all_log_probs,) = cache
    probabilities = all_log_probs.exp()
    d_output = (minibatch.one_hot - probabilities).mul_(d_log_probs.unsqueeze(1))
    if entropy_coef > 0:  # dH/dx = -p (log p + H), and the loss holds -entropy_coef * mean(H)
        entropy = -(probabilities * all_log_probs).sum(1, keepdim=True)
        d_output += (entropy_coef / len(d_output)) * probabilities * (all_log_probs + entropy)
    return d_output, None


def gradients(engine: FlatMLP, minibatch: TensorBatch, config: Any, clip: float) -> dict[str, torch.Tensor] | None:
    """The loss of one ppo.update minibatch step, differentiated by hand: fills engine.grad.

    ``minibatch`` comes from ``prepare``. Returns per-row terms for ``_statistics``, or None when
    target_kl says to stop before this step.
    """
    count = minibatch.returns.shape[0]
    activations, output, values = engine.forward(minibatch.inputs)
    log_probs, cache = _log_probs(engine, output, minibatch.actions)
    log_ratio = log_probs - minibatch.old_log_probs
    if config.target_kl is not None:  # SB3's early-stop statistic (k3), before this step's update
        if float((torch.expm1(log_ratio) - log_ratio).mean()) > 1.5 * config.target_kl:
            return None
    ratio = torch.exp(log_ratio)
    unclipped = minibatch.negative_advantages * ratio
    clipped = minibatch.negative_advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    # L = mean(max(unclipped, clipped)). Where clipped is larger the ratio lies outside the clip range
    # (inside it the two are equal), so no gradient flows; elsewhere dL/dlog π = unclipped / N.
    kept = torch.ge(unclipped, clipped)
    d_log_probs = torch.mul(unclipped, kept).div_(count)
    # value term: value_coef * mean((V - R)^2), or of max((V - R)^2, (V_clipped - R)^2) with clipping
    error = values - minibatch.returns
    terms = {"unclipped": unclipped, "clipped": clipped, "log_ratio": log_ratio, "kept": kept, "error": error}
    if config.value_clip_range is None:
        d_values = error * (2.0 * config.value_coef / count)
    else:
        squared = error.square()
        change = values - minibatch.old_values
        clip_value = config.value_clip_range
        clipped_error = minibatch.old_values + torch.clamp(change, -clip_value, clip_value) - minibatch.returns
        clipped_squared = clipped_error.square()
        # the larger square carries the gradient; the clipped one only while the change is inside the range
        d_values = torch.where(squared >= clipped_squared, error, clipped_error * (change.abs() <= clip_value))
        d_values = d_values.mul_(2.0 * config.value_coef / count)
        terms["value_loss"] = torch.maximum(squared, clipped_squared)
        terms["value_clipped"] = torch.gt(clipped_squared, squared)
    d_output, d_log_std = _head_gradients(engine, minibatch, cache, d_log_probs, config.entropy_coef)
    engine.backward(activations, d_output, d_values, d_log_std)
    return terms

