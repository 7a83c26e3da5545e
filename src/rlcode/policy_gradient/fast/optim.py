"""The fast path's optimizers: torch.optim's Adam and RMSprop, not built on ``torch.optim.Optimizer``.

Why: ``torch.optim.Optimizer``'s constructor imports ``torch._dynamo`` on first use, about one second
on our 2-core machine -- longer than PPO takes to solve CartPole. ``Adam`` and ``RMSprop`` here run
torch's own kernels with torch.optim's state layout and ``state_dict`` format, so a checkpoint written
by either loads into the other (tests/policy_gradient/test_optim.py holds them equal to torch.optim's).
The fused engine (fused.py) binds their state to its flat buffers. The reference path uses torch.optim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class Optimizer:
    """What rlcode's training loops and checkpoints use of an optimizer: ``param_groups`` (one
    group), ``state`` per parameter, ``zero_grad()``, ``step()``, ``state_dict()`` and ``load_state_dict()``."""

    defaults: dict[str, Any]
    state_keys: tuple[str, ...]  # the per-parameter moment buffers, besides "step"

    def __init__(self, parameters: Sequence[torch.nn.Parameter], **hyperparameters: Any) -> None:
        self.defaults = hyperparameters
        self.param_groups = [{"params": list(parameters), **hyperparameters}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    @property
    def parameters(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def step(self) -> None:
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    def _with_state(self) -> list[list[torch.Tensor]]:
        """[params, grads, steps, *buffers] of the parameters that have a gradient; state made on first use."""
        params = [p for p in self.parameters if p.grad is not None]
        for p in params:
            if p not in self.state:
                zeros = {key: torch.zeros_like(p, memory_format=torch.preserve_format) for key in self.state_keys}
                self.state[p] = {"step": torch.zeros((), dtype=torch.float32), **zeros}
        grads = [p.grad for p in params if p.grad is not None]
        steps = [self.state[p]["step"] for p in params]
        return [params, grads, steps, *([self.state[p][key] for p in params] for key in self.state_keys)]

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's format: state by parameter index, hyperparameters with parameter indices."""
        index = {id(p): i for i, p in enumerate(self.parameters)}
        group = {key: value for key, value in self.param_groups[0].items() if key != "params"}
        return {
            "state": {index[id(p)]: dict(values) for p, values in self.state.items()},
            "param_groups": [{**group, "params": list(range(len(self.parameters)))}],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.parameters):
            raise ValueError(
                f"the saved optimizer state has {[len(g['params']) for g in groups]} parameters in "
                f"{len(groups)} group(s); this policy has {len(self.parameters)} in one. Load it into the same "
                "architecture (hidden_sizes, shared_trunk, action space) it was saved from."
            )
        for key in self.defaults:  # hyperparameters; a torch.optim state_dict's extra keys are ignored
            if key in groups[0]:
                value = groups[0][key]
                self.param_groups[0][key] = tuple(value) if isinstance(value, list) else value
        self.state = {}
        for index, values in state_dict["state"].items():
            parameter = self.parameters[int(index)]
            self.state[parameter] = {
                key: (value.detach().to(torch.float32).clone() if key == "step"
                      else value.detach().to(parameter.dtype).clone())
                for key, value in values.items() if key == "step" or key in self.state_keys
            }


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), the arithmetic of ``torch.optim.Adam(fused=True)`` (same kernel)."""

    state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(self, parameters: Sequence[torch.nn.Parameter], lr: float, eps: float = 1e-8,
                 betas: tuple[float, float] = (0.9, 0.999)) -> None:
        super().__init__(parameters, lr=lr, betas=tuple(betas), eps=eps, weight_decay=0.0, amsgrad=False,
                         maximize=False)

    @torch.no_grad()
    def step(self) -> None:  # type: ignore[override]
        params, grads, steps, exp_avgs, exp_avg_sqs = self._with_state()
        if not params:
            return
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=float(group["lr"]),
                           beta1=float(beta1), beta2=float(beta2), weight_decay=0.0, eps=float(group["eps"]),
                           amsgrad=False, maximize=False)


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e, no momentum, not centred): the arithmetic of ``torch.optim.RMSprop``."""

    state_keys = ("square_avg",)

    def __init__(self, parameters: Sequence[torch.nn.Parameter], lr: float, alpha: float = 0.99,
                 eps: float = 1e-8) -> None:
        super().__init__(parameters, lr=lr, alpha=alpha, eps=eps, weight_decay=0.0, momentum=0.0, centered=False)

    @torch.no_grad()
    def step(self) -> None:  # type: ignore[override]
        params, grads, steps, square_avgs = self._with_state()
        if not params:
            return
        group = self.param_groups[0]
        alpha = float(group["alpha"])
        torch._foreach_add_(steps, 1)
        torch._foreach_mul_(square_avgs, alpha)  # v <- α v + (1 - α) g²
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        denominators = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(denominators, float(group["eps"]))
        torch._foreach_addcdiv_(params, grads, denominators, value=-float(group["lr"]))  # θ <- θ - lr g / (√v + ε)


def make_optimizer(parameters: Sequence[torch.nn.Parameter], name: str, learning_rate: float, eps: float) -> Optimizer:
    """Adam, or RMSprop with alpha=0.99 as SB3's A2C uses (the same choice as ``optim.make_optimizer``)."""
    if name == "rmsprop":
        return RMSprop(parameters, lr=learning_rate, alpha=0.99, eps=eps)
    return Adam(parameters, lr=learning_rate, eps=eps)
