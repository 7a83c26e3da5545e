"""group_policy_loss against a per-row loop written from the GRPO/DAPO/GSPO/Dr. GRPO formulas."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rlcode.rlhf.group_losses import group_policy_loss, rloo_policy_loss

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
LEVELS = ("token", "sequence")
LENGTHS = (6, 3, 1, 0, 5)  # response tokens per row; the empty row counts as a sequence in "grpo"'s mean
B, T, MAX_LENGTH = len(LENGTHS), 6, 8


def _batch(seed=1, spread=0.3):
    generator = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=generator, dtype=torch.float64) * 3                     # [B, T]
    log_probs = old + torch.randn(B, T, generator=generator, dtype=torch.float64) * spread
    ref = old + torch.randn(B, T, generator=generator, dtype=torch.float64) * 0.5
    advantages = torch.tensor([1.5, -0.7, 2.0, -1.0, -0.4], dtype=torch.float64)
    mask = (torch.arange(T) < torch.tensor(LENGTHS)[:, None]).double()
    return log_probs, old, advantages, mask, ref


def _loop(log_probs, old, advantages, mask, ref, loss_type, level, eps_low, eps_high, delta, beta, correct_kl,
          num_items=None):
    """Returns (loss, low, high, kl) as Python floats, one row and one token at a time."""
    rows, total_tokens = [], 0
    low = high = kl_sum = 0.0
    for i in range(B):
        tokens = [t for t in range(T) if mask[i, t] == 1]
        total_tokens += len(tokens)
        mean_log_ratio = sum(log_probs[i, t].item() - old[i, t].item() for t in tokens) / max(len(tokens), 1)
        row_loss = []
        for t in tokens:
            log_weight = mean_log_ratio if level == "sequence" else log_probs[i, t].item() - old[i, t].item()
            weight = math.exp(log_weight)
            capped = weight if delta is None else min(weight, delta)
            a = advantages[i].item()
            loss = -min(capped * a, min(max(weight, 1 - eps_low), 1 + eps_high) * a)
            if beta:
                d = ref[i, t].item() - log_probs[i, t].item()
                kl = math.exp(d) - d - 1
                kl = kl * weight if correct_kl else kl
                loss += beta * kl
                kl_sum += kl
            row_loss.append(loss)
            if level == "token":
                low += capped < 1 - eps_low and a < 0
                high += capped > 1 + eps_high and a > 0
        if level == "sequence":  # one clip flag per sequence, empty ones included
            capped = math.exp(mean_log_ratio) if delta is None else min(math.exp(mean_log_ratio), delta)
            low += capped < 1 - eps_low and advantages[i] < 0
            high += capped > 1 + eps_high and advantages[i] > 0
        rows.append(row_loss)
    flat = [x for row in rows for x in row]
    if loss_type == "grpo":
        loss = sum(sum(row) / max(len(row), 1) for row in rows) / B
    elif loss_type == "bnpo":
        loss = sum(flat) / total_tokens
    elif loss_type == "dr_grpo":
        loss = sum(flat) / (B * MAX_LENGTH)
    else:
        loss = sum(flat) / (total_tokens if num_items is None else num_items)
    count = total_tokens if level == "token" else B
    return loss, low / count, high / count, kl_sum / total_tokens


SETTINGS = [  # (eps_low, eps_high, delta, beta, kl_importance_correction)
    (0.2, None, None, 0.0, False),
    (0.2, 0.28, None, 0.04, False),
    (0.1, 0.15, 1.3, 0.1, True),
]


@pytest.mark.parametrize("loss_type,level,setting", list(itertools.product(LOSS_TYPES, LEVELS, SETTINGS)))
def test_matches_loop(loss_type, level, setting):
    eps_low, eps_high, delta, beta, correct_kl = setting
    log_probs, old, advantages, mask, ref = _batch()
    loss, stats = group_policy_loss(
        log_probs, old, advantages, mask, loss_type=loss_type, importance_sampling_level=level,
        epsilon_low=eps_low, epsilon_high=eps_high, delta=delta, ref_log_probs=ref, beta=beta,
        kl_importance_correction=correct_kl, max_completion_length=MAX_LENGTH)
    high_eps = eps_low if eps_high is None else eps_high
    expected, low, high, kl = _loop(log_probs, old, advantages, mask, ref, loss_type, level, eps_low, high_eps, delta,
                                    beta, correct_kl)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats["clip_ratio/low_mean"] == pytest.approx(low)
    assert stats["clip_ratio/high_mean"] == pytest.approx(high)
    assert stats["clip_ratio/region_mean"] == pytest.approx(low + high)
    assert stats["policy_loss"] == pytest.approx(expected, rel=1e-12)
    assert ("kl" in stats) == (beta != 0)
    if beta:
        assert stats["kl"] == pytest.approx(kl, rel=1e-12)


def test_the_batch_exercises_clipping_on_both_sides():
    log_probs, old, advantages, mask, _ = _batch()
    _, stats = group_policy_loss(log_probs, old, advantages, mask)
    assert stats["clip_ratio/low_mean"] > 0 and stats["clip_ratio/high_mean"] > 0


def test_dapo_normaliser_is_the_given_token_count():
    log_probs, old, advantages, mask, ref = _batch()
    loss, _ = group_policy_loss(log_probs, old, advantages, mask, loss_type="dapo", num_items_in_batch=40)
    expected = _loop(log_probs, old, advantages, mask, ref, "dapo", "token", 0.2, 0.2, None, 0.0, False, 40)[0]
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    bnpo, _ = group_policy_loss(log_probs, old, advantages, mask, loss_type="bnpo")
    dapo, _ = group_policy_loss(log_probs, old, advantages, mask, loss_type="dapo")
    assert torch.equal(bnpo, dapo)  # one process, one step per generation batch


TOKEN_WEIGHT = {  # d loss / d log π(y_t) = −A · weight at π = π_old, for a response token of row i
    "grpo": lambda i, n: 1 / (B * max(LENGTHS[i], 1)),
    "bnpo": lambda i, n: 1 / n,
    "dr_grpo": lambda i, n: 1 / (B * MAX_LENGTH),
    "dapo": lambda i, n: 1 / n,
}


@pytest.mark.parametrize("loss_type,level", list(itertools.product(LOSS_TYPES, LEVELS)))
def test_on_policy_gradient_is_the_plain_policy_gradient(loss_type, level):
    _, old, advantages, mask, _ = _batch()
    log_probs = old.clone().requires_grad_(True)
    loss, stats = group_policy_loss(log_probs, old, advantages, mask, loss_type=loss_type,
                                    importance_sampling_level=level, max_completion_length=MAX_LENGTH)
    loss.backward()
    tokens = sum(LENGTHS)
    weights = torch.tensor([[TOKEN_WEIGHT[loss_type](i, tokens)] * T for i in range(B)], dtype=torch.float64) * mask
    expected = -advantages[:, None] * weights                                  # [B, T]
    assert log_probs.grad is not None
    torch.testing.assert_close(log_probs.grad, expected, rtol=1e-12, atol=1e-15)
    assert loss.item() == pytest.approx(expected.sum().item(), rel=1e-12)  # every ratio is exactly 1
    assert stats["clip_ratio/region_mean"] == 0.0


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_sequence_level_equals_gspo_token_form(loss_type):
    """GSPO's token form sg[s]·π_t/sg[π_t] has the value and gradient of TRL's sequence weight s, clipped or not."""
    log_probs, old, advantages, mask, _ = _batch(seed=1, spread=0.5)
    first = log_probs.clone().requires_grad_(True)
    loss, stats = group_policy_loss(first, old, advantages, mask, loss_type=loss_type,
                                    importance_sampling_level="sequence", max_completion_length=MAX_LENGTH)
    loss.backward()
    assert stats["clip_ratio/region_mean"] > 0  # some sequences are clipped

    second = log_probs.clone().requires_grad_(True)
    mean_log_ratio = ((second - old) * mask).sum(-1) / mask.sum(-1).clamp(min=1)           # [B]
    weights = torch.exp(mean_log_ratio).detach()[:, None] * torch.exp(second - second.detach())  # [B, T]
    clipped = weights.clamp(0.8, 1.2)
    token_loss = -torch.min(weights * advantages[:, None], clipped * advantages[:, None]) * mask
    reference, _ = group_policy_loss(log_probs, old, advantages, mask, loss_type=loss_type,
                                     importance_sampling_level="sequence", max_completion_length=MAX_LENGTH)
    totals = {"grpo": None, "bnpo": mask.sum(), "dr_grpo": B * MAX_LENGTH, "dapo": mask.sum()}
    if loss_type == "grpo":
        token_form = (token_loss.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    else:
        token_form = token_loss.sum() / totals[loss_type]
    token_form.backward()
    assert token_form.item() == pytest.approx(reference.item(), rel=1e-12)
    torch.testing.assert_close(first.grad, second.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("change,match", [
    ({"old_log_probs": torch.zeros(5, 5)}, "one shape"),
    ({"advantages": torch.zeros(5, 1)}, r"advantages must be \[B\]"),
    ({"mask": torch.full((5, 6), 0.5)}, "only 0 and 1"),
    ({"loss_type": "ppo"}, "unknown loss_type"),
    ({"importance_sampling_level": "group"}, "importance_sampling_level"),
    ({"epsilon_low": 1.0}, "epsilon_low"),
    ({"epsilon_high": -0.1}, "epsilon_high"),
    ({"delta": 0.0}, "delta"),
    ({"beta": 0.1}, "ref_log_probs"),
    ({"max_completion_length": 4}, "max_completion_length"),
])
def test_bad_input_raises(change, match):
    log_probs, old, advantages, mask, _ = _batch()
    arguments = dict(log_probs=log_probs, old_log_probs=old, advantages=advantages, mask=mask) | change
    with pytest.raises(ValueError, match=match):
        group_policy_loss(**arguments)


@pytest.mark.parametrize("eps_high", [None, 0.28])
def test_rloo_loss_matches_loop(eps_high):
    log_probs, old, advantages, mask, _ = _batch(seed=1, spread=0.2)
    loss, stats = rloo_policy_loss(log_probs, old, advantages, mask, epsilon_high=eps_high)
    high_eps = 0.2 if eps_high is None else eps_high
    losses, low, high = [], 0, 0
    for i in range(B):
        weight = math.exp(sum(log_probs[i, t].item() - old[i, t].item() for t in range(LENGTHS[i])))
        a = advantages[i].item()
        losses.append(-min(weight * a, min(max(weight, 0.8), 1 + high_eps) * a))
        low += weight < 0.8 and a < 0
        high += weight > 1 + high_eps and a > 0
    assert loss.item() == pytest.approx(sum(losses) / B, rel=1e-12)
    assert (stats["clip_ratio/low_mean"], stats["clip_ratio/high_mean"]) == pytest.approx((low / B, high / B))
    assert low + high > 0  # the batch exercises the clip


def test_rloo_on_policy_gradient_sums_each_sequence():
    _, old, advantages, mask, _ = _batch()
    log_probs = old.clone().requires_grad_(True)
    rloo_policy_loss(log_probs, old, advantages, mask)[0].backward()
    torch.testing.assert_close(log_probs.grad, -advantages[:, None] * mask / B, rtol=1e-12, atol=1e-15)
