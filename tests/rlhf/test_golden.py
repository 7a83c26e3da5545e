"""Reward shaping and advantages against tensors captured inside TRL 0.11.4's own step()."""

import json
from pathlib import Path

import torch

from rlcode.rlhf import kl_penalty, token_advantages, token_rewards

# Captured inside TRL 0.11.4's own step() (torch 2.13 CPU, transformers 4.46.3) on a random 2-layer GPT-2,
# batch 4, ragged right-padded inputs; data/README.md says what each key holds.
GOLDEN = Path(__file__).resolve().parent / "data" / "trl011_golden_small.json"


def load_golden():
    data = json.loads(GOLDEN.read_text())
    return {k: (torch.tensor(v) if k not in ("config", "queries", "responses") else v) for k, v in data.items()}


def test_rewards_match_trl():
    golden = load_golden()
    kls = kl_penalty(golden["logprobs"], golden["ref_logprobs"], golden["config"]["kl_penalty"])
    rewards, non_score = token_rewards(golden["scores"], kls, golden["masks"], golden["config"]["init_kl_coef"])
    torch.testing.assert_close(kls, golden["kls"], atol=1e-6, rtol=0)
    torch.testing.assert_close(non_score, golden["non_score"], atol=1e-6, rtol=0)
    torch.testing.assert_close(rewards, golden["rewards"], atol=1e-6, rtol=0)


def test_advantages_match_trl():
    golden = load_golden()
    config = golden["config"]
    values, advantages, returns = token_advantages(
        golden["values_in"], golden["rewards"], golden["masks"], config["gamma"], config["lam"]
    )
    torch.testing.assert_close(values, golden["values"], atol=1e-6, rtol=0)
    torch.testing.assert_close(advantages, golden["advantages"], atol=1e-6, rtol=0)
    torch.testing.assert_close(returns, golden["returns"], atol=1e-6, rtol=0)


def test_rewards_with_nonzero_kl_follow_the_formula():
    golden = load_golden()
    log_probs = golden["logprobs"]
    ref = log_probs + 0.1 * torch.arange(log_probs.numel()).reshape(log_probs.shape).sin()
    mask = golden["masks"].float()
    for kind, expected in [
        ("kl", log_probs - ref), ("abs", (log_probs - ref).abs()), ("mse", 0.5 * (log_probs - ref) ** 2)
    ]:
        kls = kl_penalty(log_probs, ref, kind)
        torch.testing.assert_close(kls, expected)
        rewards, non_score = token_rewards(golden["scores"], kls, mask, 0.3)
        torch.testing.assert_close(non_score, -0.3 * expected)
        for row in range(mask.shape[0]):
            last = int(mask[row].nonzero()[-1])
            manual = -0.3 * expected[row].clone()
            manual[last] += golden["scores"][row]
            torch.testing.assert_close(rewards[row], manual)


def test_full_kl_is_the_exact_kl_between_token_distributions():
    torch.manual_seed(0)
    p = torch.randn(5, 7).log_softmax(-1)
    q = torch.randn(5, 7).log_softmax(-1)
    expected = (p.exp() * (p - q)).sum(-1)
    torch.testing.assert_close(kl_penalty(p, q, "full"), expected)
