"""Statistics over the positions where ``mask`` is 1 (TRL 0.11 conventions: unbiased variance).

Every tier uses these. ``reduce`` is applied to each sum and count before they are divided: the RLHF
tier passes ``all_reduce_sum`` so that under torchrun the statistics are the global batch's; the
default (``None``) keeps them local.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Reduce = Callable[[torch.Tensor], torch.Tensor]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def masked_mean(
    values: torch.Tensor, mask: torch.Tensor | None = None, dim: int | None = None, reduce: Reduce | None = None
) -> torch.Tensor:
    """reduce(Σ values·mask) / reduce(Σ mask), over ``dim`` or everything (TRL's masked_mean)."""
    if mask is None and reduce is None:  # the common unmasked case, without a ones tensor
        return values.mean() if dim is None else values.mean(dim=dim)
    reduce = reduce or _local
    if mask is None:
        mask = torch.ones_like(values)
    if dim is None:
        return reduce((values * mask).sum()) / reduce(mask.sum())
    return reduce((values * mask).sum(dim=dim)) / reduce(mask.sum(dim=dim))


def masked_var(
    values: torch.Tensor, mask: torch.Tensor | None = None, unbiased: bool = True, reduce: Reduce | None = None
) -> torch.Tensor:
    """Two-pass variance over masked positions, Bessel-corrected like TRL's ``masked_var``
    (``variance * (count / (count - 1))``, TRL's order of operations)."""
    if mask is None and reduce is None:
        return values.var(unbiased=unbiased)
    reduce = reduce or _local
    if mask is None:
        mask = torch.ones_like(values)
    count = reduce(mask.sum())  # reduced once, for the mean, the variance and Bessel's correction
    mean = reduce((values * mask).sum()) / count
    variance = reduce(((values - mean) ** 2 * mask).sum()) / count
    if unbiased:
        if float(count) <= 1:
            raise ValueError(
                "masked_var needs at least two unmasked values for an unbiased variance; "
                "use a larger batch or longer responses."
            )
        variance = variance * (count / (count - 1))
    return variance


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8,
    reduce: Reduce | None = None,
) -> torch.Tensor:
    """(x − mean) / sqrt(var + eps) over masked positions; with shift_mean=False the mean is kept (TRL's whiten)."""
    mean, variance = masked_mean(values, mask, reduce=reduce), masked_var(values, mask, reduce=reduce)
    whitened = (values - mean) * torch.rsqrt(variance + eps)
    return whitened if shift_mean else whitened + mean
