"""The helpers a TRL 0.11 PPO script imports from ``trl`` and ``trl.core``, with TRL's signatures.

``create_reference_model`` differs on purpose: with ``num_shared_layers`` the bottom layers of the
reference really are the policy's parameter objects (frozen in both), so they take no second copy
of memory; TRL 0.11 only looks the parameters up and still holds two copies.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rlcode import masked
from rlcode.losses import entropy_from_logits

# TRL's own list of layer-name patterns (trl/models/modeling_base.py LAYER_PATTERNS), in its order.
LAYER_PATTERNS = ("transformer.h.{layer}", "model.decoder.layers.{layer}", "gpt_neox.layers.{layer}",
                  "model.layers.{layer}")
WANDB_PADDING = -1  # TRL pads ragged per-minibatch statistics with this value in stack_dicts


class LengthSampler:
    """Draws a length uniformly from ``range(min_value, max_value)`` with numpy's global RNG, like TRL."""

    def __init__(self, min_value: int, max_value: int) -> None:
        self.values = list(range(min_value, max_value))
        if not self.values:
            raise ValueError(f"LengthSampler({min_value}, {max_value}) has no values: max_value is exclusive, "
                             "so it must exceed min_value.")

    def __call__(self) -> int:
        return int(np.random.choice(self.values))


def _shared_prefix(names: list[str], num_shared_layers: int, pattern: str | None) -> int:
    """How many of ``names`` (in module order) come before layer ``num_shared_layers``'s first parameter."""
    candidates = [pattern] if pattern is not None else list(LAYER_PATTERNS)
    for candidate in candidates:
        prefix = candidate.format(layer=num_shared_layers) + "."
        for index, name in enumerate(names):
            if prefix in name:
                return index
    tried = pattern if pattern is not None else ", ".join(LAYER_PATTERNS)
    raise ValueError(
        f"create_reference_model: no parameter name matches layer {num_shared_layers} of the pattern(s) {tried} "
        f"(first names: {names[:3]}); num_shared_layers must be below the model's layer count, and an unusual "
        "architecture needs pattern='<its layer prefix>.{layer}'."
    )


def create_reference_model(model: nn.Module, num_shared_layers: int | None = None,
                           pattern: str | None = None) -> nn.Module:
    """A frozen eval-mode copy of ``model``; its parameters before layer ``num_shared_layers`` are shared.

    The shared parameters (embeddings and layers 0..num_shared_layers-1) stay the very same tensors in
    both models and are frozen in the policy too, as in TRL; everything else is copied.
    """
    if num_shared_layers is None:
        frozen_copy = getattr(model, "frozen_copy", None)
        if callable(frozen_copy):
            return frozen_copy()
        reference = copy.deepcopy(model)
        return reference.eval().requires_grad_(False)
    if isinstance(num_shared_layers, bool) or not isinstance(num_shared_layers, int) or num_shared_layers < 0:
        raise ValueError(f"num_shared_layers must be None or an integer >= 0, got {num_shared_layers!r}.")
    named = dict(model.named_parameters())  # tied weights appear once, under their first name
    names = list(named)
    shared = [named[name] for name in names[: _shared_prefix(names, num_shared_layers, pattern)]]
    for parameter in shared:
        parameter.requires_grad_(False)
    memo: dict[int, Any] = {id(parameter): parameter for parameter in shared}  # deepcopy keeps these as they are
    reference = copy.deepcopy(model, memo)
    return reference.eval().requires_grad_(False)


def top_k_top_p_filtering(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0,
                          filter_value: float = -float("inf"), min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Logits [B, V] with all but the ``top_k`` largest and outside the ``top_p`` nucleus set to filter_value."""
    logits = logits.clone()
    if top_k > 0:
        k = min(max(top_k, min_tokens_to_keep), logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # [B, 1]
        logits[logits < kth] = filter_value
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability mass strictly above each token
        remove = before > top_p
        remove[..., :min_tokens_to_keep] = False
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(remove, filter_value))
    return logits


def respond_to_batch(model: nn.Module, queries: torch.Tensor, txt_len: int = 20, top_k: int = 0,
                     top_p: float = 1.0) -> torch.Tensor:
    """Sample ``txt_len`` tokens after each row of ``queries`` [B, L] without a KV cache; returns [B, txt_len]."""
    input_ids = queries
    for _ in range(txt_len):
        logits = model(input_ids)[0][:, -1, :]  # [B, V]
        probs = top_k_top_p_filtering(logits, top_k=top_k, top_p=top_p).softmax(dim=-1)
        next_token = torch.multinomial(probs, num_samples=1)  # [B, 1]
        input_ids = torch.cat([input_ids, next_token], dim=-1)
    return input_ids[:, -txt_len:]


# trl.core's tensor helpers, over rlcode.masked ---------------------------------------------------
def masked_mean(values: torch.Tensor, mask: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1, over ``axis`` or everything."""
    return masked.masked_mean(values, mask, dim=axis)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance where ``mask`` is 1, Bessel-corrected when ``unbiased`` (raises with fewer than 2 values)."""
    return masked.masked_var(values, mask, unbiased=unbiased)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(values − mean) / sqrt(var + 1e-8) over the mask; the mean is added back when not ``shift_mean``."""
    return masked.masked_whiten(values, mask, shift_mean=shift_mean)


def whiten(values: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Unmasked ``masked_whiten`` (unbiased variance)."""
    return masked.masked_whiten(values, None, shift_mean=shift_mean)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor | None, gather: bool = True) -> torch.Tensor:
    """log-softmax of ``logits`` [..., V], at ``labels`` [...] when ``gather``."""
    log_probs = logits.log_softmax(dim=-1)
    if not gather or labels is None:
        return log_probs
    return log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def clip_by_value(x: torch.Tensor, tensor_min: Any, tensor_max: Any) -> torch.Tensor:
    """Elementwise clamp of ``x`` between two tensors (or numbers)."""
    return torch.max(torch.min(torch.as_tensor(x), torch.as_tensor(tensor_max)), torch.as_tensor(tensor_min))


def flatten_dict(nested: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a/b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}{sep}{inner}": v for inner, v in flatten_dict(value, sep).items()})
        else:
            flat[key] = value
    return flat


def stack_dicts(stats_dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per key, the dicts' flattened tensors as rows of one [len(stats_dicts), longest] tensor (padded with -1)."""
    return {key: torch.nn.utils.rnn.pad_sequence([torch.flatten(d[key]) for d in stats_dicts], batch_first=True,
                                                 padding_value=WANDB_PADDING)
            for key in stats_dicts[0]}


def stats_to_np(stats_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Tensors to numpy (bfloat16 through float32); a one-element array to a Python scalar."""
    converted: dict[str, Any] = {}
    for key, value in stats_dict.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            value = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.item()
        converted[key] = value
    return converted


def convert_to_scalar(stats: Mapping[str, Any]) -> dict[str, Any]:
    """One-element tensors and arrays to Python scalars; everything else as it is."""
    def scalar(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.numel() == 1 or isinstance(value, np.ndarray) and value.size == 1:
            return value.item()
        return value

    return {key: scalar(value) for key, value in stats.items()}


__all__ = [
    "LAYER_PATTERNS", "LengthSampler", "clip_by_value", "convert_to_scalar", "create_reference_model",
    "entropy_from_logits", "flatten_dict", "logprobs_from_logits", "masked_mean", "masked_var", "masked_whiten",
    "respond_to_batch", "stack_dicts", "stats_to_np", "top_k_top_p_filtering", "whiten",
]
