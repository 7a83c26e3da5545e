"""A tied input embedding and LM head (GPT-2's ``wte``) whose backward makes one weight gradient.

Through ``nn.Embedding`` and ``nn.Linear`` the shared [V, d] weight gets two gradients per backward,
the head's (dense) and the lookup's (a zero-filled [V, d] tensor with the looked-up rows added), which
autograd then sums into a third: three [V, d] tensors and as many passes over them in every minibatch
(model B: ~4 ms of a ~35 ms minibatch on one core). Here the head's backward leaves its gradient in a
slot and the lookup's backward adds its rows to it in place, the only gradient the weight receives.
The result equals the two-module gradient up to the order of float additions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rlcode.rlhf.fast.onednn import raw_linear


class _Slot:
    """Hands the head's weight gradient to the lookup's backward (which runs after it)."""

    def __init__(self) -> None:
        self.gradient: torch.Tensor | None = None


class _TiedLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, input_ids: torch.Tensor, weight: torch.Tensor, slot: _Slot) -> torch.Tensor:
        ctx.save_for_backward(input_ids)
        ctx.slot, ctx.weight_shape = slot, weight.shape
        return nn.functional.embedding(input_ids, weight)  # [..., d]

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        (input_ids,) = ctx.saved_tensors
        gradient, ctx.slot.gradient = ctx.slot.gradient, None
        if gradient is None:  # the logits were not part of this backward
            gradient = grad_output.new_zeros(ctx.weight_shape)
        gradient.index_add_(0, input_ids.reshape(-1), grad_output.reshape(-1, grad_output.shape[-1]))
        return None, gradient, None


class _TiedHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, slot: _Slot) -> torch.Tensor:
        ctx.save_for_backward(hidden, weight)
        ctx.slot = slot
        return raw_linear(hidden, weight)  # [N, V]

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        hidden, weight = ctx.saved_tensors
        ctx.slot.gradient = raw_linear(grad_output.t(), hidden.t())  # [V, d] = grad^T hidden, as nn.Linear's backward
        return (raw_linear(grad_output, weight.t()) if ctx.needs_input_grad[0] else None), None, None


def tied_lookup_and_head(weight: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor],
                                                         Callable[[torch.Tensor], torch.Tensor]]:
    """(lookup, head) for one forward: ``lookup(ids)`` [..., d] and ``head(hidden)`` [N, V] on 2-D hidden."""
    slot = _Slot()
    return (lambda input_ids: _TiedLookup.apply(input_ids, weight, slot)), (
        lambda hidden: _TiedHead.apply(hidden, weight, slot))


def tied_weight(language_model: Any) -> torch.Tensor | None:
    """The weight a plain ``nn.Embedding`` shares with a bias-free ``nn.Linear`` head, else None."""
    lookup, head = language_model.get_input_embeddings(), language_model.get_output_embeddings()
    plain_lookup = type(lookup) is nn.Embedding and lookup.padding_idx is None and lookup.max_norm is None and (
        not lookup.scale_grad_by_freq and not lookup.sparse)
    plain_head = type(head) is nn.Linear and head.bias is None
    return lookup.weight if plain_lookup and plain_head and head.weight is lookup.weight else None
