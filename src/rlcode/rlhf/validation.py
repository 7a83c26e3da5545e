"""Checks of ``step()`` inputs, all done before any forward pass or weight change."""

from __future__ import annotations

from typing import Any

import torch


def _expected(size: int, distributed: bool) -> str:
    if distributed:
        return f"this process's share batch_size / world_size = {size}"
    return f"PPOConfig.batch_size = {size}"


def _check_ids(name: str, items: Any, size: int, distributed: bool) -> list[torch.Tensor]:
    if isinstance(items, torch.Tensor) or not isinstance(items, (list, tuple)):
        raise ValueError(
            f"{name} must be a list of 1-D token-id tensors, got {type(items).__name__}; "
            f"pass [tensor, tensor, ...] with one tensor per example."
        )
    if len(items) != size:
        raise ValueError(
            f"step() got {len(items)} {name} but expects {_expected(size, distributed)}; pass exactly that many "
            "(query, response, score) triples or change PPOConfig.batch_size."
        )
    for i, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            raise ValueError(f"{name}[{i}] is a {type(item).__name__}; pass a 1-D torch.LongTensor of token ids.")
        if item.dim() != 1:
            raise ValueError(
                f"{name}[{i}] has shape {tuple(item.shape)}; pass a 1-D tensor of token ids (use .flatten() or "
                "index the row of a batch)."
            )
        if item.dtype.is_floating_point or item.dtype.is_complex or item.dtype == torch.bool:
            raise ValueError(f"{name}[{i}] has dtype {item.dtype}; pass integer token ids (torch.long).")
        if item.numel() == 0:
            raise ValueError(
                f"{name}[{i}] is empty; every query and response needs at least one token "
                "(drop the example or generate with min_new_tokens=1)."
            )
    return list(items)


def _check_scores(scores: Any, size: int, distributed: bool) -> torch.Tensor:
    if isinstance(scores, torch.Tensor):
        if scores.dim() != 1:
            raise ValueError(
                f"scores has shape {tuple(scores.shape)}; pass a list of scalar tensors or a 1-D tensor [batch]."
            )
        scores = list(scores)
    if not isinstance(scores, (list, tuple)):
        raise ValueError(f"scores must be a list of scalar tensors or floats, got {type(scores).__name__}.")
    if len(scores) != size:
        raise ValueError(
            f"step() got {len(scores)} scores but expects {_expected(size, distributed)}; pass one score per response."
        )
    values = []
    for i, score in enumerate(scores):
        if isinstance(score, torch.Tensor):
            if score.numel() != 1 or score.dim() > 1:
                raise ValueError(
                    f"scores[{i}] has shape {tuple(score.shape)}; a score is one number per response: "
                    "pass a 0-d tensor (e.g. torch.tensor(1.0)) or a float."
                )
            score = score.detach().reshape(()).float().cpu()
        elif isinstance(score, (int, float)) and not isinstance(score, bool):
            score = torch.tensor(float(score))
        else:
            raise ValueError(f"scores[{i}] is a {type(score).__name__}; pass a float or a 0-d tensor.")
        values.append(score)
    stacked = torch.stack(values) if values else torch.zeros(0)
    bad = (~torch.isfinite(stacked)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"scores at positions {bad} are NaN or infinite ({[float(stacked[i]) for i in bad]}); fix the reward "
            "function or drop those examples before step()."
        )
    return stacked


def _check_lengths(queries: list[torch.Tensor], responses: list[torch.Tensor], max_positions: int | None) -> None:
    """query + response must fit the model's position embeddings, or the forward dies with an IndexError."""
    if max_positions is None:
        return
    for i, (query, response) in enumerate(zip(queries, responses)):
        if len(query) + len(response) > max_positions:
            raise ValueError(
                f"queries[{i}] + responses[{i}] hold {len(query)} + {len(response)} = {len(query) + len(response)} "
                f"tokens but the model has {max_positions} positions; truncate the query (keep its last "
                "tokens) or generate fewer new tokens."
            )


def checked_inputs(
    queries: Any, responses: Any, scores: Any, response_masks: Any, size: int, vocab_size: int,
    device: torch.device, distributed: bool = False, max_positions: int | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, list[torch.Tensor] | None]:
    """Validate and move to ``device``; raises ValueError saying what to pass."""
    queries = _check_ids("queries", queries, size, distributed)
    responses = _check_ids("responses", responses, size, distributed)
    _check_lengths(queries, responses, max_positions)
    score_tensor = _check_scores(scores, size, distributed)
    all_ids = torch.cat([t.reshape(-1).cpu() for t in queries + responses])
    low, high = int(all_ids.min()), int(all_ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"token ids range over [{low}, {high}] but the model's vocabulary is [0, {vocab_size - 1}]; "
            "tokenise with the model's own tokenizer (or resize the model's embeddings)."
        )
    if response_masks is not None:
        if not isinstance(response_masks, (list, tuple)) or len(response_masks) != size:
            got = len(response_masks) if isinstance(response_masks, (list, tuple)) else type(response_masks).__name__
            raise ValueError(f"response_masks must be a list of {size} 1-D tensors (one per response), got {got}.")
        checked = []
        for i, (mask, response) in enumerate(zip(response_masks, responses)):
            if not isinstance(mask, torch.Tensor) or mask.dim() != 1 or len(mask) != len(response):
                shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise ValueError(
                    f"response_masks[{i}] has shape {shape} but responses[{i}] has {len(response)} tokens; "
                    "pass one 0/1 entry per response token."
                )
            if not bool(((mask == 0) | (mask == 1)).all()) or not bool((mask != 0).any()):
                raise ValueError(
                    f"response_masks[{i}] must hold only 0/1 with at least one 1 (a response with no trained "
                    "token has nowhere to put its score); fix the mask or drop the example."
                )
            checked.append(mask.to(device))
        response_masks = checked
    queries = [q.to(device=device, dtype=torch.long) for q in queries]
    responses = [r.to(device=device, dtype=torch.long) for r in responses]
    return queries, responses, score_tensor.to(device), response_masks
