"""Masked statistics against straightforward computations on the selected values."""

from __future__ import annotations

import pytest
import torch

from rlcode.masked import masked_mean, masked_var, masked_whiten


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(4, 7, generator=generator, dtype=torch.float64)
    mask = (torch.rand(4, 7, generator=generator) > 0.4).double()
    mask[0, 0] = 1.0
    return values, mask


def test_mean_var_whiten_match_selected_values(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    values, mask = data
    selected = [float(v) for v, m in zip(values.flatten(), mask.flatten()) if m == 1]
    n = len(selected)
    mean = sum(selected) / n
    variance = sum((x - mean) ** 2 for x in selected) / (n - 1)
    assert masked_mean(values, mask).item() == pytest.approx(mean, abs=1e-12)
    assert masked_var(values, mask).item() == pytest.approx(variance, abs=1e-12)
    whitened = masked_whiten(values, mask)
    expected = [(x - mean) / (variance + 1e-8) ** 0.5 for x in selected]
    got = [float(w) for w, m in zip(whitened.flatten(), mask.flatten()) if m == 1]
    assert got == pytest.approx(expected, abs=1e-10)
    kept = masked_whiten(values, mask, shift_mean=False)
    assert torch.allclose(kept, whitened + mean)


def test_row_means(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    values, mask = data
    rows = masked_mean(values, mask, dim=1)
    for row in range(values.shape[0]):
        chosen = values[row][mask[row] == 1]
        assert rows[row].item() == pytest.approx(chosen.mean().item(), abs=1e-12)


def test_unmasked_falls_back_to_plain_statistics(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    values, _ = data
    assert masked_mean(values).item() == pytest.approx(values.mean().item())
    assert masked_var(values).item() == pytest.approx(values.var().item())


def test_variance_of_one_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least two"):
        masked_var(torch.ones(3), torch.tensor([0.0, 1.0, 0.0]))
