"""Ragged (query, response) pairs as one right-padded batch, and the response-only forward.

Alignment follows TRL 0.11's ``batched_forward_pass``: the log-prob/value at position t predicts
token t+1, so over the T−1 positions of a row with query length Lq and response length Lr the mask
covers [Lq−1, Lq−1+Lr), multiplied by the optional per-token ``response_masks``. Rows are
right-padded like TRL's GPT-2 collator, so position ids are those of the unpadded sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence


@dataclass
class ResponseBatch:
    input_ids: torch.Tensor  # [B, T] query then response, right-padded
    attention_mask: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T-1] float, 1 where a response token is trained on
    lengths: np.ndarray  # [B] query + response lengths (host side, for trimming without syncs)
    query_lengths: np.ndarray  # [B]
    response_lengths: np.ndarray  # [B]

    @classmethod
    def pad(
        cls,
        queries: list[torch.Tensor],
        responses: list[torch.Tensor],
        response_masks: list[torch.Tensor] | None,
        pad_token_id: int,
        device: torch.device | str,
    ) -> ResponseBatch:
        query_lengths = np.array([len(q) for q in queries])
        response_lengths = np.array([len(r) for r in responses])
        rows = [torch.cat([q, r]) for q, r in zip(queries, responses)]
        input_ids = pad_sequence(rows, batch_first=True, padding_value=pad_token_id).to(device)  # [B, T]
        lengths = query_lengths + response_lengths
        positions = torch.arange(input_ids.shape[1], device=device)
        lengths_t = torch.as_tensor(lengths, device=device)
        attention_mask = (positions < lengths_t[:, None]).long()  # [B, T]
        starts = torch.as_tensor(query_lengths - 1, device=device)[:, None]  # [B, 1]
        offsets = positions[:-1] - starts  # [B, T-1] index into the response
        in_response = (offsets >= 0) & (offsets < torch.as_tensor(response_lengths, device=device)[:, None])
        mask = in_response.float()
        if response_masks is not None:
            padded = pad_sequence([m.float() for m in response_masks], batch_first=True).to(device)  # [B, Lr]
            mask = mask * padded.gather(1, offsets.clamp(0, padded.shape[1] - 1))
        return cls(input_ids, attention_mask, mask, lengths, query_lengths, response_lengths)

    @property
    def size(self) -> int:
        return len(self.lengths)

    def rows(self, index: np.ndarray) -> ResponseBatch:
        """The given rows, trimmed to their own longest sequence (less padding per minibatch)."""
        width = int(self.lengths[index].max())
        rows = torch.as_tensor(index, device=self.input_ids.device)
        return ResponseBatch(
            self.input_ids[rows, :width],
            self.attention_mask[rows, :width],
            self.mask[rows, : width - 1],
            self.lengths[index],
            self.query_lengths[index],
            self.response_lengths[index],
        )


@dataclass
class ResponseOutputs:
    """Per-token outputs at the trained positions, flat in row-major order: [N] or [N, V]."""

    log_probs: torch.Tensor  # [N]
    values: torch.Tensor | None  # [N]
    entropy: torch.Tensor | None  # [N]
    full_log_probs: torch.Tensor | None  # [N, V], for kl_penalty="full"


def response_forward(
    model: Any, batch: ResponseBatch, values: bool = True, entropy: bool = False, full: bool = False
) -> ResponseOutputs:
    """One forward of ``model`` (a CausalLMWithValueHead) giving outputs only where ``batch.mask`` > 0."""
    positions = batch.mask > 0  # [B, T-1]
    labels = batch.input_ids[:, 1:][positions]  # [N]
    hidden_positions = torch.nn.functional.pad(positions, (0, 1))  # [B, T], position t predicts t+1
    logits, token_values = model.selected_outputs(batch.input_ids, batch.attention_mask, hidden_positions, values)
    log_softmax = logits.log_softmax(dim=-1)  # [N, V]
    log_probs = log_softmax.gather(1, labels[:, None]).squeeze(1)  # [N]
    token_entropy = None
    if entropy:
        with torch.no_grad():
            detached = log_softmax.detach()
            token_entropy = -(detached.exp() * detached).sum(-1)  # [N]
    return ResponseOutputs(log_probs, token_values, token_entropy, log_softmax if full else None)


def scatter_tokens(flat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put per-token values [N] back at the mask's positions of a zero [B, T-1] tensor."""
    full = torch.zeros(mask.shape, dtype=flat.dtype, device=flat.device)
    full[mask > 0] = flat
    return full
