"""The module mode of ``PPOTrainer.step()``'s forwards: dropout off, gradient checkpointing on.

transformers checkpoints a block only when the module that checks ``self.gradient_checkpointing``
is also in training mode: the backbone (``GPT2Model``, ``LlamaModel``) in 4.46, each
``GradientCheckpointingLayer`` decoder layer in 5.x. ``model.eval()`` alone would therefore switch
checkpointing off. Here every module is put in eval mode, then exactly those flagged modules are put
back in training mode with the float dropout probabilities they read themselves set to 0 (OPT's layers
call ``functional.dropout(p=self.dropout)``; its decoder skips layers with ``self.layerdrop``).
Their children stay in eval mode, so no ``nn.Dropout`` and no attention dropout runs, and a
checkpointed forward computes what an eval forward computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


def _own_dropout_names(module: nn.Module) -> list[str]:
    """The float attributes named like a dropout probability that ``module`` itself reads (not submodules)."""
    return [name for name, value in vars(module).items()
            if "drop" in name and isinstance(value, float) and not isinstance(value, bool) and value != 0.0]


@contextmanager
def dropout_free_forwards(model: nn.Module) -> Iterator[None]:
    """Eval mode everywhere except the modules with gradient checkpointing on (see the module docstring);
    the previous modes and dropout values come back on exit."""
    modes = [(module, module.training) for module in model.modules()]
    saved: list[tuple[nn.Module, str, float]] = []
    model.eval()
    try:
        for module in model.modules():
            if getattr(module, "gradient_checkpointing", False) is True:
                module.training = True  # this module only: its children keep their eval mode
                for name in _own_dropout_names(module):
                    saved.append((module, name, getattr(module, name)))
                    setattr(module, name, 0.0)
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        for module, training in modes:
            module.training = training


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode, and each one's own previous mode back on exit (``train(flag)`` would
    give all of them one flag and undo ``dropout_free_forwards``)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def set_checkpointing(lm: Any, enable: bool, options: dict[str, Any] | None = None) -> None:
    """Switch a transformers model's gradient checkpointing, non-reentrant by default (a frozen embedding's
    output needs no ``requires_grad`` then), under 5.x's name when it has it (the old name warns there)."""
    if not enable:
        (getattr(lm, "activation_checkpointing_disable", None) or lm.gradient_checkpointing_disable)()
        return
    options = {"use_reentrant": False} if options is None else dict(options)
    if hasattr(lm, "activation_checkpointing_enable"):
        lm.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def is_checkpointing(lm: Any) -> bool:
    if hasattr(lm, "is_activation_checkpointing"):  # transformers 5.x (the old name warns)
        return bool(lm.is_activation_checkpointing)
    return bool(getattr(lm, "is_gradient_checkpointing", False))
