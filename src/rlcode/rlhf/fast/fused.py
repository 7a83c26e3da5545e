"""Fused tanh-GELU for the trainer's forwards: GPT-2's ``gelu_new`` as one kernel, swapped in and out.

GPT-2 (and GPT-J, CodeGen, ...) compute the tanh approximation of GELU in Python,
``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``: eight elementwise ops forward and more backward,
each a full pass over the [tokens, 4d] MLP activations. ``F.gelu(x, approximate="tanh")`` is the same
function in one kernel (transformers' ``gelu_pytorch_tanh``); the two agree to float32 rounding
(``tests/rlhf/test_fused.py`` checks values and gradients). ``PPOTrainer.step`` swaps the modules in
for its forwards only (``PPOConfig.fused_activations``) and puts the originals back afterwards, so
generation and the caller's own forwards run the model exactly as built.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class FusedTanhGELU(nn.Module):
    """``F.gelu(x, approximate="tanh")``: the tanh-approximate GELU in one kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x, approximate="tanh")


def _tanh_gelu_classes() -> tuple[type, ...]:
    """transformers' Python implementations of the tanh-approximate GELU."""
    from transformers import activations

    names = ("NewGELUActivation", "FastGELUActivation")
    return tuple(getattr(activations, name) for name in names if hasattr(activations, name))


@contextmanager
def fused_activations(*models: nn.Module) -> Iterator[int]:
    """Within the block, every Python tanh-GELU module of ``models`` is a ``FusedTanhGELU``.

    Yields how many modules were swapped; the original modules are restored on exit, even on error.
    """
    classes = _tanh_gelu_classes()
    swapped: list[tuple[nn.Module, str, nn.Module]] = []  # (parent, attribute, original)
    fused = FusedTanhGELU()  # stateless, so one instance serves every position
    try:
        for model in models:
            for parent in model.modules():
                for name, child in parent.named_children():
                    if type(child) in classes:
                        setattr(parent, name, fused)
                        swapped.append((parent, name, child))
        yield len(swapped)
    finally:
        for parent, name, original in reversed(swapped):
            setattr(parent, name, original)
