"""Batched generation: all queries left-padded in one ``generate`` call, using the KV cache.

Returned responses drop the prompt and the padding and end at the first eos (kept), as TRL 0.11's
``_generate_batched(..., remove_padding=True)`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def left_pad(queries: list[torch.Tensor], pad_token_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L] input ids with the padding on the left, and the matching attention mask."""
    width = max(len(q) for q in queries)
    input_ids = torch.full((len(queries), width), pad_token_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((len(queries), width), dtype=torch.long, device=device)
    for row, query in enumerate(queries):
        input_ids[row, width - len(query):] = query.to(device)
        attention_mask[row, width - len(query):] = 1
    return input_ids, attention_mask


def generate_responses(
    model: Any,
    queries: list[torch.Tensor],
    pad_token_id: int,
    eos_token_id: int | None,
    batch_size: int | None = None,
    return_prompt: bool = False,
    length_sampler: Callable[[], int] | None = None,
    **generation_kwargs: Any,
) -> list[torch.Tensor]:
    """Generate for every query with ``model.generate`` (a transformers model or CausalLMWithValueHead)."""
    if not queries:
        return []
    for i, query in enumerate(queries):
        if not isinstance(query, torch.Tensor) or query.dim() != 1 or query.numel() == 0:
            raise ValueError(f"query_tensors[{i}] must be a non-empty 1-D tensor of token ids.")
    device = next(model.parameters()).device
    size = batch_size or len(queries)
    generation_kwargs.setdefault("pad_token_id", pad_token_id)
    if eos_token_id is not None:
        generation_kwargs.setdefault("eos_token_id", eos_token_id)
    was_training = model.training
    model.eval()
    outputs: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for start in range(0, len(queries), size):
                chunk = queries[start : start + size]
                if length_sampler is not None:
                    generation_kwargs["max_new_tokens"] = length_sampler()
                input_ids, attention_mask = left_pad(chunk, pad_token_id, device)
                generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, **generation_kwargs)
                outputs.extend(_strip(generated[:, input_ids.shape[1]:], chunk, eos_token_id, return_prompt))
    finally:
        model.train(was_training)
    return outputs


def _strip(
    responses: torch.Tensor, queries: list[torch.Tensor], eos_token_id: int | None, return_prompt: bool
) -> list[torch.Tensor]:
    """Cut each row after its first eos (kept); prepend the unpadded query when asked."""
    lengths = [responses.shape[1]] * len(queries)
    if eos_token_id is not None and responses.shape[1]:
        is_eos = responses == eos_token_id  # [B, new]
        first = is_eos.int().argmax(dim=1)
        lengths = torch.where(is_eos.any(dim=1), first + 1, responses.shape[1]).tolist()
    rows = [responses[i, :n] for i, n in enumerate(lengths)]
    if return_prompt:
        rows = [torch.cat([q.to(r.device), r]) for q, r in zip(queries, rows)]
    return rows
