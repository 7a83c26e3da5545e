"""KL estimators checked against the exact KL of a tiny GPT-2 and a perturbed copy of it.

Sampled means are compared with the exact expectation within 4 standard errors; the gradient facts
of the module docstring are checked by enumerating the vocabulary (no sampling), in float64.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from rlcode.rlhf.kl_estimators import exact_kl, kl_estimate

from .conftest import make_model

PREFIXES = torch.tensor([[5, 9, 13, 21], [7, 3, 44, 30], [11, 12, 4, 8]])
SAMPLES = 20_000
NEAR, FAR = 0.05, 0.2  # std of the noise added to every reference weight: KL ≈ 0.05 and ≈ 0.5–0.9


@pytest.fixture(scope="module")
def next_token_logits():
    """{noise scale: (policy logits, reference logits)} at the last position of each prefix, [N, V] float64."""
    policy = make_model(0).pretrained_model.eval()
    out = {}
    for scale in (NEAR, FAR):
        reference = copy.deepcopy(policy)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for parameter in reference.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
            out[scale] = (policy(PREFIXES).logits[:, -1].double(), reference(PREFIXES).logits[:, -1].double())
    return out


def _sampled(logits, ref_logits, seed=2):
    log_p, log_q = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    tokens = torch.multinomial(log_p.exp(), SAMPLES, replacement=True, generator=torch.Generator().manual_seed(seed))
    return log_p.gather(1, tokens), log_q.gather(1, tokens)                  # [N, SAMPLES] each


def test_exact_kl_matches_hand_loop():
    generator = torch.Generator().manual_seed(0)
    logits, ref_logits = torch.randn(2, 3, 7, generator=generator), torch.randn(2, 3, 7, generator=generator) * 2
    got = exact_kl(logits, ref_logits)
    assert got.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            p_norm = sum(math.exp(x) for x in logits[i, j].tolist())
            q_norm = sum(math.exp(x) for x in ref_logits[i, j].tolist())
            expected = 0.0
            for x, y in zip(logits[i, j].tolist(), ref_logits[i, j].tolist()):
                p, q = math.exp(x) / p_norm, math.exp(y) / q_norm
                expected += p * math.log(p / q)
            assert got[i, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert torch.equal(exact_kl(logits, logits), torch.zeros(2, 3))


def test_exact_kl_ignores_tokens_the_policy_never_samples():
    logits = torch.tensor([[0.0, 0.0, float("-inf")]])
    ref_logits = torch.tensor([[0.0, 1.0, float("-inf")]])  # both give token 2 probability 0: 0·(−inf − −inf) is 0
    expected = 0.5 * math.log(0.5 / (1 / (1 + math.e))) + 0.5 * math.log(0.5 / (math.e / (1 + math.e)))
    assert exact_kl(logits, ref_logits).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("scale", [NEAR, FAR])
def test_k1_and_k3_are_unbiased(next_token_logits, scale):
    logits, ref_logits = next_token_logits[scale]
    exact = exact_kl(logits, ref_logits)                                       # [N]
    log_p, log_q = _sampled(logits, ref_logits)
    for kind in ("k1", "k3"):
        estimate = kl_estimate(log_p, log_q, kind)
        standard_error = estimate.std(dim=1) / math.sqrt(SAMPLES)
        assert ((estimate.mean(dim=1) - exact).abs() < 4 * standard_error).all(), kind


@pytest.mark.parametrize("scale", [NEAR, FAR])
def test_k2_estimates_half_the_second_moment_of_the_log_ratio(next_token_logits, scale):
    logits, ref_logits = next_token_logits[scale]
    log_p, log_q = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    second_moment = 0.5 * (log_p.exp() * (log_q - log_p) ** 2).sum(-1)       # E_π[k2], exactly
    estimate = kl_estimate(*_sampled(logits, ref_logits), "k2")
    standard_error = estimate.std(dim=1) / math.sqrt(SAMPLES)
    assert ((estimate.mean(dim=1) - second_moment).abs() < 4 * standard_error).all()
    if scale == FAR:  # far apart, k2 overestimates the KL by many standard errors
        assert (estimate.mean(dim=1) - exact_kl(logits, ref_logits) > 10 * standard_error).all()


@pytest.mark.parametrize("scale", [NEAR, FAR])
def test_ppo_reward_kl_penalties_against_the_exact_kl(next_token_logits, scale):
    """PPOTrainer's per-token reward KL (``kl_penalty``): "kl" is k1 (unbiased), "mse" is k2, "abs" is
    biased upward (E|log r| >= |E log r|), "full" is the exact KL itself."""
    from rlcode.rlhf.kl import kl_penalty

    logits, ref_logits = next_token_logits[scale]
    exact = exact_kl(logits, ref_logits)                                       # [N]
    log_p, log_q = _sampled(logits, ref_logits)
    penalty = {kind: kl_penalty(log_p, log_q, kind) for kind in ("kl", "abs", "mse")}
    error = {kind: value.std(dim=1) / math.sqrt(SAMPLES) for kind, value in penalty.items()}
    assert ((penalty["kl"].mean(dim=1) - exact).abs() < 4 * error["kl"]).all()
    assert torch.equal(penalty["kl"], kl_estimate(log_p, log_q, "k1"))
    torch.testing.assert_close(penalty["mse"], kl_estimate(log_p, log_q, "k2"), rtol=1e-12, atol=0)
    assert (penalty["abs"].mean(dim=1) - exact > 4 * error["abs"]).all()
    full = kl_penalty(torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1), "full")
    torch.testing.assert_close(full, exact, rtol=1e-10, atol=1e-12)


def test_signs_and_variance_ordering(next_token_logits):
    logits, ref_logits = next_token_logits[NEAR]
    log_p, log_q = _sampled(logits, ref_logits)
    k1, k2, k3 = (kl_estimate(log_p, log_q, kind) for kind in ("k1", "k2", "k3"))
    assert (k1 < 0).any()  # k1 is negative for tokens the reference prefers
    assert (k2 >= 0).all() and (k3 >= 0).all()
    assert (k3.var(dim=1) < 0.2 * k1.var(dim=1)).all()
    far = kl_estimate(*_sampled(*next_token_logits[FAR]), "k3")
    assert (far >= 0).all()


def _expected_loss_gradient(logits, ref_logits, loss_of):
    """∇_logits Σ_v π_old(v) · loss_of(log π(v), log π_ref(v), log π_old(v)) at π = π_old: the exact expectation
    over the sampled token of the gradient of a per-token loss term."""
    logits = logits.clone().requires_grad_(True)
    log_p, log_q = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    weights = log_p.exp().detach()
    (gradient,) = torch.autograd.grad((weights * loss_of(log_p, log_q, log_p.detach())).sum(), logits)
    return gradient


def _gradient_of(divergence, logits, ref_logits):
    logits = logits.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(divergence(logits, ref_logits).sum(), logits)
    return gradient


@pytest.mark.parametrize("scale", [NEAR, FAR])
def test_gradients_of_estimators_used_as_loss_terms(next_token_logits, scale):
    logits, ref_logits = next_token_logits[scale]
    forward = _gradient_of(exact_kl, logits, ref_logits)                                      # ∇ KL(π ‖ π_ref)
    reverse = _gradient_of(lambda a, b: exact_kl(b.detach(), a), logits, ref_logits)          # ∇ KL(π_ref ‖ π)
    assert (forward - reverse).abs().max() > 1e-3  # the two really differ here

    def close(a, b):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)

    def k(kind):
        return lambda log_p, log_q, old: kl_estimate(log_p, log_q, kind)

    close(_expected_loss_gradient(logits, ref_logits, k("k2")), forward)
    close(_expected_loss_gradient(logits, ref_logits, k("k3")), reverse)
    assert (_expected_loss_gradient(logits, ref_logits, k("k3")) - forward).abs().max() > 1e-3
    close(_expected_loss_gradient(logits, ref_logits, k("k1")), torch.zeros_like(forward))
    for kind in ("k1", "k3"):  # importance-weighted (TRL's use_bias_correction_kl): the exact gradient
        weighted = _expected_loss_gradient(
            logits, ref_logits, lambda log_p, log_q, old, kind=kind: (log_p - old).exp() * kl_estimate(log_p, log_q, kind))
        close(weighted, forward)
    # k1 as a reward: the REINFORCE term k1 · log π with k1 held constant
    reinforce = _expected_loss_gradient(
        logits, ref_logits, lambda log_p, log_q, old: kl_estimate(old, log_q, "k1") * log_p)
    close(reinforce, forward)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same tokens"):
        kl_estimate(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_estimate(torch.zeros(2), torch.zeros(2), "k4")
    with pytest.raises(ValueError, match="same vocabulary"):
        exact_kl(torch.zeros(2, 3), torch.zeros(2, 4))
