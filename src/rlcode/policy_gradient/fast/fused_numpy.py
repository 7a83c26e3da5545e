"""A2C's fused step in numpy: rollout values, n-step advantages and one gradient step.

Why numpy: an A2C rollout is small (CartPole's zoo setting: 8 envs x 5 steps = 40 rows), so an op
costs its fixed overhead, about 1 µs in numpy against 4-5 µs in torch, and the step is ~70 ops of
them; in torch they took ~0.9 ms a rollout, here ~0.2 ms. The arithmetic is fused.py's (the same
forward, the same closed-form head gradients, the same backward, ``FlatMLP.optimizer_step``'s Adam or
RMSprop), on numpy views of the FlatMLP's flat torch buffers, so the ActorCritic and optimizer
objects see every change and checkpoints save it.

A2C needs one forward for both jobs: the rollout's values V(s_t) (for the advantages) come from the
same weights as the update's, so the forward that feeds GAE is reused by the backward. Invalid rows
(the autoreset step after an episode end, ``mask`` 0) get weight 0 in every mean instead of being
cut out, which gives the same numbers without copying the activations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rlcode.advantages import gae
from rlcode.batch import TensorBatch
from rlcode.policy_gradient.fast.fused import FlatMLP, clip_coefficient

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class NumpyMLP:
    """Numpy views of a FlatMLP's weights and gradients, and its forward and backward passes; also
    the rollout's actor (``policy_output``): with 8 rows a numpy op costs ~1 µs against ~5 µs in torch,
    and the actor runs once per env step. The views stay valid as long as the engine (its flat
    buffers never move; a checkpoint load copies into them)."""

    def __init__(self, engine: FlatMLP) -> None:
        self.engine = engine
        self.trunks, self.tanh = engine.trunks, engine.activation == "tanh"
        self.weights = [w.numpy() for w in engine.weights]  # [T, out, in] per hidden layer
        self.biases = [b.numpy() for b in engine.bias_rows]  # [T, 1, out]
        self.grad_weights = [g.numpy() for g in engine.grad_weights]
        self.grad_biases = [g.numpy() for g in engine.grad_biases]  # [T, out]
        self.policy_weight, self.policy_bias = engine.policy_weight.numpy(), engine.policy_bias.numpy()  # [A, H], [A]
        self.value_weight, self.value_bias = engine.value_weight.numpy(), engine.value_bias.numpy()  # [H], [1]
        self.log_std = engine.log_std.numpy() if engine.log_std is not None else None
        self.grads = {name: block.numpy() for name, block in engine.grad_blocks.items()}
        self.flat, self.grad, self.steps = engine.flat.numpy(), engine.grad.numpy(), engine.steps.numpy()
        self.moments = {name: engine.buffers[name].numpy() for name in engine.state_keys}
        # the actor trunk (trunk 0) as (weightᵀ, bias) per layer, then the policy head
        self.actor = [(w[0].T, b[0, 0]) for w, b in zip(self.weights, self.biases)]
        self.actor_head = (self.policy_weight.T, self.policy_bias)

    def policy_output(self, observations: np.ndarray) -> np.ndarray:
        """ActorCritic.policy_output in numpy: logits or Gaussian means [N, A] for observations [N, obs]."""
        x = observations
        for weight, bias in self.actor:
            x = x @ weight
            x += bias
            np.tanh(x, out=x) if self.tanh else np.maximum(x, 0.0, out=x)
        return x @ self.actor_head[0] + self.actor_head[1]

    def forward(self, inputs: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Activations per layer (inputs [M, obs] first, then [T, M, H]), head output [M, A], values [M]."""
        activations = [inputs]
        for weight, bias in zip(self.weights, self.biases):
            hidden = np.matmul(activations[-1], weight.transpose(0, 2, 1))  # [T, M, H]; inputs broadcast over T
            hidden += bias
            np.tanh(hidden, out=hidden) if self.tanh else np.maximum(hidden, 0.0, out=hidden)
            activations.append(hidden)
        output = activations[-1][0] @ self.policy_weight.T + self.policy_bias
        values = activations[-1][-1] @ self.value_weight + self.value_bias[0]
        return activations, output, values

    def backward(self, activations: list[np.ndarray], d_output: np.ndarray, d_values: np.ndarray,
                 d_log_std: np.ndarray | None) -> None:
        """Write dL/dθ into the flat gradient buffer from dL/d(head output) [N, A], dL/dV [N] and
        dL/dlog_std [A]; ``activations`` may hold more rows than N (the first N are used)."""
        rows = len(d_values)
        layers = [a[:rows] if a.ndim == 2 else a[:, :rows] for a in activations]
        features = layers[-1]  # [T, N, H]
        grads = self.grads
        np.matmul(d_output.T, features[0], out=grads["policy_weight"])
        grads["policy_bias"][:] = d_output.sum(0)  # (a plain sum and a copy beat sum(out=) at this size)
        np.matmul(d_values, features[-1], out=grads["value_weight"])
        grads["value_bias"][0] = d_values.sum()
        if d_log_std is not None:
            grads["log_std"][:] = d_log_std
        d_hidden = np.empty(features.shape, dtype=np.float32)  # dL/d(last activations) per trunk
        np.matmul(d_output, self.policy_weight, out=d_hidden[0])
        if self.trunks == 2:
            np.multiply(d_values[:, None], self.value_weight, out=d_hidden[1])
        else:
            d_hidden[0] += d_values[:, None] * self.value_weight
        for k in reversed(range(len(self.weights))):
            if self.tanh:  # d tanh(z)/dz = 1 - tanh(z)^2
                d_hidden *= 1.0 - np.square(layers[k + 1])
            else:  # d relu(z)/dz = 1 where relu(z) > 0
                d_hidden *= layers[k + 1] > 0
            np.matmul(d_hidden.transpose(0, 2, 1), layers[k], out=self.grad_weights[k])
            self.grad_biases[k][:] = d_hidden.sum(1)
            if k > 0:
                d_hidden = np.matmul(d_hidden, self.weights[k])


    def optimizer_step(self, max_grad_norm: float | None) -> float:
        """FlatMLP.optimizer_step's clip and Adam or RMSprop step, in numpy on the same buffers (in a
        loop of numpy ops, torch's seven ops took ~60 µs against ~20 µs here); returns the norm."""
        grad, flat = self.grad, self.flat
        norm = math.sqrt(float(np.dot(grad, grad)))
        scale = clip_coefficient(norm, max_grad_norm)
        if scale is not None:
            grad *= np.float32(scale)
        options = self.engine.optimizer.param_groups[0]
        self.steps += 1.0
        lr, eps = float(options["lr"]), float(options["eps"])
        if "exp_avg" in self.moments:  # Adam (Kingma & Ba 2015, Algorithm 1, as torch's kernel orders it)
            beta1, beta2 = (float(beta) for beta in options["betas"])
            exp_avg, exp_avg_sq = self.moments["exp_avg"], self.moments["exp_avg_sq"]
            exp_avg += (grad - exp_avg) * np.float32(1 - beta1)  # lerp towards the gradient
            exp_avg_sq *= np.float32(beta2)
            exp_avg_sq += np.square(grad) * np.float32(1 - beta2)
            step = float(self.steps[0])
            denominator = np.sqrt(exp_avg_sq)
            denominator /= np.float32(math.sqrt(1 - beta2**step))
            denominator += np.float32(eps)
            step_size = lr / (1 - beta1**step)
        else:  # RMSprop: v <- α v + (1 - α) g², θ <- θ - lr g / (√v + ε)
            alpha, square_avg = float(options["alpha"]), self.moments["square_avg"]
            square_avg *= np.float32(alpha)
            square_avg += np.square(grad) * np.float32(1 - alpha)
            denominator = np.sqrt(square_avg)
            denominator += np.float32(eps)
            exp_avg, step_size = grad, lr
        np.divide(exp_avg, denominator, out=denominator)
        denominator *= np.float32(step_size)
        flat -= denominator
        return norm


def a2c_rollout_update(mlp: NumpyMLP, rollout: TensorBatch, last_observations: torch.Tensor,
                       config: Any) -> dict[str, float]:
    """rollout.with_policy_outputs, then a2c.prepare and a2c.update, fused: one forward over the
    rollout and the observations after it, GAE, one gradient step. Returns a2c.update's statistics
    and the rollout's mean entropy."""
    B, T = rollout.rewards.shape
    observations = rollout.observations.numpy().reshape(B * T, -1)
    inputs = np.concatenate([observations, last_observations.numpy()])  # [B*T + B, obs]
    activations, output, all_values = mlp.forward(inputs)
    values, last_values = all_values[: B * T].reshape(B, T), all_values[B * T :]
    terminated, truncated = rollout.terminated.numpy(), rollout.truncated.numpy()
    following = np.concatenate([values[:, 1:], last_values[:, None]], axis=1)  # V(s_{t+1}) [B, T]
    continues = 1.0 - np.maximum(terminated, truncated)
    advantages, returns = gae(rollout.rewards.numpy(), values, following * (1.0 - terminated), continues,
                              config.gamma, config.gae_lambda)
    actions = rollout.actions.numpy().reshape(B * T, *rollout.actions.shape[2:])  # [N] or [N, A]
    mask = rollout.mask.numpy().reshape(-1)
    stats = _gradient_step(mlp, activations, output[: B * T], values.reshape(-1), actions, advantages.reshape(-1),
                           returns.reshape(-1), mask, config)
    stats["value/explained_variance"] = _explained_variance(values.reshape(-1), returns.reshape(-1), mask)
    return stats


def _explained_variance(values: np.ndarray, returns: np.ndarray, mask: np.ndarray) -> float:
    """losses.explained_variance over the valid rows, in numpy (each torch op would cost ~5 µs here)."""
    count = float(mask.sum())
    if count < 2:
        return float("nan")

    def variance(x: np.ndarray) -> float:  # Bessel's factor cancels in the ratio, as in masked_var
        mean = float((x * mask).sum()) / count
        return float((np.square(x - mean) * mask).sum()) / (count - 1)

    target = variance(returns)
    return float("nan") if target == 0.0 else 1.0 - variance(returns - values) / target


def a2c_update(mlp: NumpyMLP, flat: TensorBatch, config: Any) -> dict[str, float]:
    """a2c.update's gradient step, fused, on rows that already hold advantages and returns."""
    activations, output, values = mlp.forward(flat.observations.numpy())
    stats = _gradient_step(mlp, activations, output, values, flat.actions.numpy(), flat.advantages.numpy(),
                           flat.returns.numpy(), np.ones(len(values), dtype=np.float32), config)
    del stats["loss/entropy"]  # a2c.update reports the losses; the rollout's entropy is train's
    return stats


def _gradient_step(mlp: NumpyMLP, activations: list[np.ndarray], output: np.ndarray, values: np.ndarray,
                   actions: np.ndarray, advantages: np.ndarray, returns: np.ndarray, mask: np.ndarray,
                   config: Any) -> dict[str, float]:
    """−mean(log π(a|s)·A) + value_coef·mean((V − R)²) − entropy_coef·mean(entropy) over rows with
    mask 1, differentiated by hand (fused.py derives each line), then one optimizer step."""
    count = float(mask.sum())
    if count == 0:  # every row is an autoreset step: nothing to learn from
        return {"loss/policy": 0.0, "loss/value": 0.0, "optim/grad_norm": 0.0, "loss/entropy": 0.0}
    if config.normalize_advantages and count > 1:  # masked_whiten: unbiased variance, eps 1e-8
        mean = float((advantages * mask).sum()) / count
        variance = float((np.square(advantages - mean) * mask).sum()) / (count - 1)
        advantages = (advantages - mean) / np.float32(math.sqrt(variance + 1e-8))
    weights = mask / np.float32(count)  # each valid row's share of a mean
    d_log_probs = -advantages * weights
    if mlp.log_std is not None:  # Box actions: log N(a; μ, σ) summed over action dims
        log_std = mlp.log_std
        inverse_std = np.exp(-log_std)
        z = (actions - output) * inverse_std
        log_probs = (-0.5 * np.square(z) - log_std - _LOG_SQRT_2PI).sum(1)
        d_output = (d_log_probs[:, None] * z) * inverse_std
        d_log_std = (d_log_probs[:, None] * (np.square(z) - 1.0)).sum(0) - config.entropy_coef
        entropy = np.full(len(values), (0.5 + _LOG_SQRT_2PI + log_std).sum(), dtype=np.float32)
    else:  # d log softmax(x)_a / dx = onehot(a) - softmax(x)
        shifted = output - output.max(1, keepdims=True)
        all_log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        probabilities = np.exp(all_log_probs)
        rows, actions = np.arange(len(actions)), actions.astype(np.int64, copy=False)
        log_probs = all_log_probs[rows, actions]
        entropy = -(probabilities * all_log_probs).sum(1)
        d_output = probabilities * -d_log_probs[:, None]
        d_output[rows, actions] += d_log_probs
        if config.entropy_coef > 0:  # dH/dx = -p (log p + H), and the loss holds -entropy_coef * mean(H)
            d_output += (config.entropy_coef * weights)[:, None] * probabilities * (all_log_probs + entropy[:, None])
        d_log_std = None
    error = values - returns
    mlp.backward(activations, d_output, error * (2.0 * config.value_coef) * weights, d_log_std)
    stats = {
        "loss/policy": float(np.dot(log_probs, d_log_probs)),  # -Σ log π·A·weight
        "loss/value": float(np.dot(np.square(error), weights)),
        "loss/entropy": float(np.dot(entropy, weights)),
    }
    stats["optim/grad_norm"] = mlp.optimizer_step(config.max_grad_norm)
    return stats
