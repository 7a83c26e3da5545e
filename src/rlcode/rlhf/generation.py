"""Batched generation: queries left-padded in chunks, one ``generate`` call per chunk, with the KV cache.

Returned responses drop the padding and end at the first eos (kept), as TRL 0.11's
``_generate_batched(..., remove_padding=True)`` does, with one deliberate difference: the eos cut is
looked for only in the generated tokens. TRL cuts at the first eos anywhere in prompt + response, so
a prompt that contains eos (a chat template's turn separator) loses its end and the whole response.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
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


def check_queries(queries: Any) -> list[torch.Tensor]:
    """The queries as a list of non-empty 1-D token tensors, or a ValueError before any generation."""
    queries = list(queries)
    if not queries:
        raise ValueError("generate() got an empty list of queries; pass at least one 1-D tensor of token ids.")
    for i, query in enumerate(queries):
        if not isinstance(query, torch.Tensor) or query.dim() != 1 or query.numel() == 0:
            described = f"a {query.dim()}-D tensor of {query.numel()} elements" if isinstance(query, torch.Tensor) \
                else type(query).__name__
            raise ValueError(f"query_tensor[{i}] must be a non-empty 1-D tensor of token ids, got {described}.")
    return queries


# the settings under which "sample from the model's own softmax" is all that generate() does
_NEUTRAL = {"temperature": (None, 1.0, 1), "top_k": (None, 0), "top_p": (None, 1.0, 1), "num_beams": (None, 1),
            "typical_p": (None, 1.0, 1), "min_p": (None, 0.0, 0), "epsilon_cutoff": (None, 0.0, 0),
            "eta_cutoff": (None, 0.0, 0)}


def inverse_cdf_sampling(generation_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``generation_kwargs`` with plain sampling (do_sample, temperature 1, no top-k/top-p) done by
    ``InverseCdfSampler`` in place of transformers' ``torch.multinomial``; other settings unchanged.

    The distribution is the same (the model's softmax after transformers' processors such as
    min_new_tokens); only the way of drawing from it differs: one uniform per row and a search in the
    cumulative sum, where multinomial draws one exponential per vocabulary entry (a third of a GRPO
    cycle's generation time at a 5000-token vocabulary on a 2-core CPU). The draws differ from
    multinomial's for the same seed.
    """
    if not generation_kwargs.get("do_sample") or generation_kwargs.get("logits_processor") is not None or any(
            generation_kwargs.get(name) not in allowed for name, allowed in _NEUTRAL.items()):
        return generation_kwargs
    from transformers import LogitsProcessorList

    kwargs = {k: v for k, v in generation_kwargs.items() if k not in _NEUTRAL}
    # greedy decoding of a one-hot score is the sample; None keeps the model's generation_config's
    # sampling values (SmolLM2 sets temperature and top_p) out of a greedy run
    return kwargs | {"do_sample": False, "temperature": None, "top_k": None, "top_p": None,
                     "logits_processor": LogitsProcessorList([InverseCdfSampler()])}


class InverseCdfSampler:
    """A transformers logits processor that samples: the drawn token scores 0, every other −inf."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cdf = torch.softmax(scores.float(), dim=-1).cumsum(dim=-1)           # [B, V]
        draw = torch.rand((scores.shape[0], 1), device=scores.device) * cdf[:, -1:]   # [B, 1] in [0, total)
        # right=True: a token of probability 0 has an empty interval and is never drawn
        picked = torch.searchsorted(cdf, draw, right=True).clamp_(max=scores.shape[1] - 1)
        return torch.full_like(scores, -torch.inf).scatter_(1, picked, 0.0)


@contextmanager
def _sampling(model: Any) -> Any:
    """No gradients and dropout off while generating; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _special_kwargs(generation_kwargs: dict[str, Any], pad_token_id: int, eos_token_id: int | None) -> dict[str, Any]:
    kwargs = dict(generation_kwargs)
    kwargs.setdefault("pad_token_id", pad_token_id)
    if eos_token_id is not None:
        kwargs.setdefault("eos_token_id", eos_token_id)
    return kwargs


def generate_responses(
    model: Any,
    queries: list[torch.Tensor],
    pad_token_id: int,
    eos_token_id: int | None,
    batch_size: int | None = None,
    return_prompt: bool = False,
    length_sampler: Callable[[], int] | None = None,
    remove_padding: bool = True,
    **generation_kwargs: Any,
) -> list[torch.Tensor]:
    """Generate for every query with ``model.generate`` (a transformers model or CausalLMWithValueHead).

    Chunks of ``batch_size`` queries (all at once when None); ``length_sampler()`` draws each chunk's
    ``max_new_tokens``. Without ``remove_padding`` every row keeps the chunk's full generated width.
    """
    if not queries:
        return []
    queries = check_queries(queries)
    device = next(model.parameters()).device
    size = min(batch_size or len(queries), len(queries))
    kwargs = _special_kwargs(generation_kwargs, pad_token_id, eos_token_id)
    outputs: list[torch.Tensor] = []
    with _sampling(model):
        for start in range(0, len(queries), size):
            chunk = queries[start : start + size]
            if length_sampler is not None:
                kwargs["max_new_tokens"] = length_sampler()
            input_ids, attention_mask = left_pad(chunk, kwargs["pad_token_id"], device)
            generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            cut = eos_token_id if remove_padding else None
            outputs.extend(_strip(generated[:, input_ids.shape[1]:], chunk, cut, return_prompt))
    return outputs


def generate_single(
    model: Any, query: torch.Tensor, pad_token_id: int, eos_token_id: int | None, return_prompt: bool = True,
    **generation_kwargs: Any,
) -> torch.Tensor:
    """TRL's single-query form: one ``generate`` call, the [1, L] output as it is (nothing cut)."""
    query = check_queries([query])[0]
    kwargs = _special_kwargs(generation_kwargs, pad_token_id, eos_token_id)
    device = next(model.parameters()).device
    input_ids = query.to(device).unsqueeze(0)  # [1, Lq]
    with _sampling(model):
        generated = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    return generated if return_prompt else generated[:, len(query):]  # [1, L]


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
