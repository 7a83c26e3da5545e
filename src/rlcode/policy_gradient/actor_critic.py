"""Actor-critic MLPs: Categorical logits for Discrete actions, a diagonal Gaussian for Box actions.

The hot paths (``act`` in the rollout, ``evaluate`` in the update) compute log-probabilities and
entropies directly from logits/means instead of building ``torch.distributions`` objects, and call
``F.linear`` rather than ``Module.__call__``: with 64-unit layers the Python overhead per op is the
cost that matters. ``forward`` still returns ``(distribution, value)`` for users who want one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rlcode.losses import entropy_from_logits

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _mlp(input_size: int, hidden_sizes: tuple[int, ...]) -> nn.ModuleList:
    sizes = (input_size, *hidden_sizes)
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


def _linears(layers: nn.ModuleList | None) -> list[nn.Linear]:
    return [layer for layer in layers or () if isinstance(layer, nn.Linear)]


class ActorCritic(nn.Module):
    """π(a|s) and V(s) from one observation vector; separate trunks unless ``shared_trunk``."""

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        continuous: bool,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        shared_trunk: bool = False,
        orthogonal_init: bool = True,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.continuous = continuous
        self.activation = torch.tanh if activation == "tanh" else torch.relu
        self.actor_body = _mlp(observation_size, hidden_sizes)
        # a shared trunk is registered once (safetensors refuses aliased tensors in one file)
        self.critic_body = None if shared_trunk else _mlp(observation_size, hidden_sizes)
        self.shared_trunk = shared_trunk
        self.policy_head = nn.Linear(hidden_sizes[-1], action_size)
        self.value_head = nn.Linear(hidden_sizes[-1], 1)
        self.log_std = nn.Parameter(torch.full((action_size,), float(log_std_init))) if continuous else None
        if orthogonal_init:
            self._orthogonal_init()

    def _orthogonal_init(self) -> None:
        """Gains as in SB3/CleanRL (after Andrychowicz et al. 2021): sqrt(2) hidden, 0.01 policy, 1 value."""
        hidden = _linears(self.actor_body) + _linears(self.critic_body)
        for layer, gain in [(h, math.sqrt(2)) for h in hidden] + [(self.policy_head, 0.01), (self.value_head, 1.0)]:
            nn.init.orthogonal_(layer.weight, gain=gain)
            nn.init.zeros_(layer.bias)

    def _body(self, layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = self.activation(F.linear(x, layer.weight, layer.bias))  # type: ignore[arg-type]
        return x

    def policy_output(self, observations: torch.Tensor) -> torch.Tensor:
        """Logits [N, A] (Discrete) or Gaussian means [N, A] (Box)."""
        head = self.policy_head
        return F.linear(self._body(self.actor_body, observations), head.weight, head.bias)

    def value(self, observations: torch.Tensor) -> torch.Tensor:
        """V(s) [N]."""
        head, body = self.value_head, self.critic_body or self.actor_body
        return F.linear(self._body(body, observations), head.weight, head.bias).squeeze(-1)

    def _outputs(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.shared_trunk:
            return self.policy_output(observations), self.value(observations)
        features = self._body(self.actor_body, observations)
        output = F.linear(features, self.policy_head.weight, self.policy_head.bias)
        return output, F.linear(features, self.value_head.weight, self.value_head.bias).squeeze(-1)

    def act(
        self, observations: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> torch.Tensor:
        """Actions [N] (Discrete) or [N, A] (Box, unclipped); call under torch.inference_mode."""
        output = self.policy_output(observations)
        if not self.continuous:
            if deterministic:
                return output.argmax(dim=-1)
            # Gumbel-max: argmax(logits + Gumbel noise) ~ Categorical(softmax(logits)); -log(Exp(1)) is
            # Gumbel(0, 1). Three ops, against torch.multinomial's much costlier call on tiny batches.
            exponential = torch.empty_like(output).exponential_(generator=generator)
            return (output - exponential.log()).argmax(dim=-1)
        if deterministic:
            return output
        assert self.log_std is not None
        noise = torch.randn(output.shape, generator=generator, dtype=output.dtype)
        return output + self.log_std.exp() * noise

    def evaluate(
        self, observations: torch.Tensor, actions: torch.Tensor, with_entropy: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(log π(a|s) [N], entropy [N] or None if not asked for, V(s) [N]) for given actions."""
        output, values = self._outputs(observations)
        if not self.continuous:
            log_probs = torch.log_softmax(output, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            return log_probs, entropy_from_logits(output) if with_entropy else None, values
        assert self.log_std is not None
        z = (actions - output) * torch.exp(-self.log_std)
        log_probs = (-0.5 * z.pow(2) - self.log_std - _LOG_SQRT_2PI).sum(dim=-1)
        entropy = (0.5 + _LOG_SQRT_2PI + self.log_std).sum().expand(log_probs.shape) if with_entropy else None
        return log_probs, entropy, values

    def forward(self, observations: torch.Tensor) -> tuple[torch.distributions.Distribution, torch.Tensor]:
        """(π(·|s), V(s)) as a torch distribution, for analysis and users; training uses ``evaluate``."""
        output, values = self._outputs(observations)
        if not self.continuous:
            return torch.distributions.Categorical(logits=output), values
        assert self.log_std is not None
        scale = self.log_std.exp().expand_as(output)
        return torch.distributions.Independent(torch.distributions.Normal(output, scale), 1), values
