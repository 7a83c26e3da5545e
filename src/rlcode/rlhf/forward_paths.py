"""Whether a causal LM can take ``CausalLMWithValueHead``'s fast forward paths (see that class).

Each check runs both forwards on a fixed 7-token probe (ids 0..6) in eval mode without gradients, so
for given model code and weights the answer is always the same.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rlcode.rlhf.fast.tied import tied_weight
from rlcode.rlhf.modes import eval_mode


def can_split_heads(model: Any) -> bool:
    """Whether ``model`` has the shape ``lm_head(base_model(x))`` with a Linear head (probe not run)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return isinstance(head, nn.Linear) and getattr(model, "base_model", model) is not model


def split_heads_match(model: Any, vocab_size: int, device: torch.device) -> bool:
    """Whether ``lm_head(base_model(x))`` gives the model's logits and last hidden state (within 1e-4)."""
    head, base = model.get_output_embeddings(), model.base_model
    try:
        with eval_mode(model), torch.no_grad():
            ids = torch.arange(min(7, vocab_size), device=device).unsqueeze(0) % vocab_size
            mask = torch.ones_like(ids)
            full = model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True)
            hidden = base(input_ids=ids, attention_mask=mask, use_cache=False)[0]
            split = head(hidden).float()
        # the value head reads hidden_states[-1] (as TRL does): the backbone's output must be that too
        same_hidden = hidden.shape == full.hidden_states[-1].shape and torch.allclose(
            hidden, full.hidden_states[-1], rtol=1e-4, atol=1e-4
        )
        return same_hidden and full.logits.shape == split.shape and torch.allclose(
            full.logits.float(), split, rtol=1e-4, atol=1e-4
        )
    # An unusual model: its forward takes no such arguments or returns no logits/hidden_states (TypeError,
    # AttributeError, transformers' ValueError), or its head does not fit the backbone's output
    # (RuntimeError): the plain forward serves it.
    except (TypeError, AttributeError, ValueError, RuntimeError):
        return False


def tied_inputs_match(model: Any, vocab_size: int, device: torch.device) -> bool:
    """Whether the backbone gives exactly the same output from ``inputs_embeds=embed(ids)`` as from ``ids``."""
    if tied_weight(model) is None:
        return False
    with eval_mode(model), torch.no_grad():  # dropout would make the two forwards differ
        ids = torch.arange(min(7, vocab_size), device=device).unsqueeze(0)
        mask = torch.ones_like(ids)
        by_ids = model.base_model(input_ids=ids, attention_mask=mask, use_cache=False)[0]
        embeds = model.get_input_embeddings()(ids)
        by_embeds = model.base_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)[0]
    return torch.equal(by_ids, by_embeds)
