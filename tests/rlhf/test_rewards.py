"""Reward shaping, advantages, score moments and the KL controllers against naive loops."""

import numpy as np
import pytest
import torch

from rlcode.masked import masked_var, masked_whiten
from rlcode.rlhf import AdaptiveKLController, FixedKLController, RunningMoments, processed_scores
from rlcode.rlhf.distributed import all_reduce_sum
from rlcode.rlhf.rewards import token_advantages, token_rewards


def random_mask(rows, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(rows, width)
    for row in range(rows):
        start = int(torch.randint(0, width - 2, (1,), generator=generator))
        end = int(torch.randint(start + 1, width + 1, (1,), generator=generator))
        mask[row, start:end] = 1
    return mask


def test_token_advantages_equal_a_naive_gae_loop():
    torch.manual_seed(0)
    mask = random_mask(5, 9)
    values, rewards = torch.randn(5, 9), torch.randn(5, 9)
    gamma, lam = 0.9, 0.8
    got_values, advantages, returns = token_advantages(values, rewards, mask, gamma, lam)
    masked_values, masked_rewards = values * mask, rewards * mask
    raw = torch.zeros(5, 9)
    for row in range(5):
        running = 0.0
        for t in reversed(range(9)):
            next_value = masked_values[row, t + 1] if t + 1 < 9 else 0.0
            delta = masked_rewards[row, t] + gamma * next_value - masked_values[row, t]
            running = delta + gamma * lam * running
            raw[row, t] = running
    torch.testing.assert_close(got_values, masked_values)
    torch.testing.assert_close(returns, raw + masked_values)
    selected = raw[mask > 0]
    whitened = (raw - selected.mean()) / torch.sqrt(selected.var() + 1e-8)
    torch.testing.assert_close(advantages, whitened, rtol=1e-5, atol=1e-5)


def test_whitened_rewards_keep_their_mean():
    torch.manual_seed(1)
    mask = random_mask(4, 7, seed=1)
    rewards = torch.randn(4, 7)
    whitened = masked_whiten(rewards * mask, mask, shift_mean=False, reduce=all_reduce_sum)
    torch.testing.assert_close(whitened, masked_whiten(rewards * mask, mask, shift_mean=False))
    selected = (rewards * mask)[mask > 0]
    assert float(whitened[mask > 0].mean()) == pytest.approx(float(selected.mean()), abs=1e-5)


def test_shared_masked_statistics_reduce_every_sum_and_count():
    """A reduce that doubles sums and counts is two identical processes: the statistics of the batch twice."""
    mask = random_mask(4, 7, seed=2)
    values = torch.randn(4, 7)
    twice = lambda tensor: 2 * tensor  # noqa: E731
    both = torch.cat([values, values]), torch.cat([mask, mask])
    torch.testing.assert_close(masked_var(values, mask, reduce=twice), masked_var(*both))
    whitened = masked_whiten(values, mask, reduce=twice)
    torch.testing.assert_close(torch.cat([whitened, whitened]), masked_whiten(*both))


def test_score_lands_on_the_last_trained_token():
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.float)
    kls = torch.ones(3, 5)
    rewards, non_score = token_rewards(torch.tensor([1.0, 2.0, 3.0]), kls, mask, 0.5)
    expected = torch.full((3, 5), -0.5)
    expected[0, 2] += 1.0
    expected[1, 4] += 2.0
    expected[2, 4] += 3.0
    torch.testing.assert_close(rewards, expected)
    torch.testing.assert_close(non_score, torch.full((3, 5), -0.5))


def test_running_moments_equal_the_moments_of_everything_seen():
    moments = RunningMoments()
    generator = torch.Generator().manual_seed(0)
    seen = []
    for size in (5, 3, 8):
        batch = torch.randn(size, generator=generator) * 3 + 1
        seen.append(batch)
        mean, std = moments.update(batch)
        assert mean == pytest.approx(float(batch.double().mean()), rel=1e-6)
        assert std == pytest.approx(float(batch.double().std()), rel=1e-6)
    everything = torch.cat(seen).double().numpy()
    assert moments.mean == pytest.approx(everything.mean(), rel=1e-9)
    assert moments.std == pytest.approx(everything.std(ddof=1), rel=1e-9)
    assert moments.var == pytest.approx(everything.var(), rel=1e-9)


def test_processed_scores_scale_normalise_and_clip():
    scores = torch.tensor([1.0, 3.0, 5.0, 7.0])
    std = float(scores.std())
    torch.testing.assert_close(processed_scores(scores, RunningMoments(), True, False, None), scores / std)
    normed = processed_scores(scores, RunningMoments(), True, True, None)
    torch.testing.assert_close(normed, (scores - 4.0) / std)
    torch.testing.assert_close(processed_scores(scores, RunningMoments(), False, False, 2.0), scores.clamp(-2, 2))


def test_adaptive_controller_formula_and_clip():
    controller = AdaptiveKLController(0.2, target=6.0, horizon=10000.0)
    controller.update(9.0, n_steps=256)  # KL/target − 1 = 0.5 → clipped to 0.2
    assert controller.value == pytest.approx(0.2 * (1 + 0.2 * 256 / 10000), rel=1e-6)
    value = controller.value
    controller.update(5.4, n_steps=256)  # −0.1, inside the clip
    assert controller.value == pytest.approx(value * (1 - 0.1 * 256 / 10000), rel=1e-6)
    assert controller.value == float(np.float32(controller.value))  # float32 arithmetic, like TRL
    fixed = FixedKLController(0.3)
    fixed.update(100.0, 256)
    assert fixed.value == 0.3
