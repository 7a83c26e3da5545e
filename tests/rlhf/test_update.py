import torch

from rlcode.rlhf import PPOConfig
from rlcode.rlhf.update import MINIBATCH_STATS, TOKEN_ROWS, minibatch_stats


def unbiased_var(x: torch.Tensor) -> float:
    return float(((x - x.mean()) ** 2).sum() / (len(x) - 1)) if len(x) > 1 else float("nan")


def naive_stats(tokens: torch.Tensor, keep: float, config: PPOConfig) -> dict[str, float]:
    """One minibatch's statistics written out token by token, as TRL 0.11's loss() computes them."""
    row = dict(zip(TOKEN_ROWS, tokens.double()))
    ratio, advantages, returns, values, old = row["ratio"], row["advantages"], row["returns"], row["values"], row["old_values"]
    clipped_ratio = ratio.clamp(1 - config.cliprange, 1 + config.cliprange)
    clipped_values = torch.maximum(torch.minimum(values, old + config.cliprange_value), old - config.cliprange_value)
    policy_losses, policy_clipped = -advantages * ratio, -advantages * clipped_ratio
    value_losses, value_clipped = (values - returns) ** 2, (clipped_values - returns) ** 2
    policy = float(torch.maximum(policy_losses, policy_clipped).mean()) * keep
    value = 0.5 * float(torch.maximum(value_losses, value_clipped).mean()) * keep
    return {
        "loss/policy": policy, "loss/value": value, "loss/total": policy + config.vf_coef * value,
        "policy/entropy": float(row["entropy"].mean()), "policy/approxkl": float(0.5 * (row["log_ratio"] ** 2).mean()),
        "policy/policykl": float(-row["log_ratio"].mean()),
        "policy/clipfrac": float((policy_clipped > policy_losses).double().mean()),
        "policy/advantages_mean": float(advantages.mean()), "returns/mean": float(returns.mean()),
        "returns/var": unbiased_var(returns), "val/vpred": float(values.mean()),
        "val/error": float(((values - returns) ** 2).mean()),
        "val/clipfrac": float((value_clipped > value_losses).double().mean()), "val/mean": float(old.mean()),
        "val/var": unbiased_var(old), "policy/ratio_mean": float(ratio.mean()),
    }


def test_minibatch_stats_equal_the_per_minibatch_formulas():
    config = PPOConfig(batch_size=8, mini_batch_size=2, cliprange=0.1, cliprange_value=0.05)
    generator = torch.Generator().manual_seed(0)
    tokens = []
    for n in (5, 1, 9):  # one minibatch of a single token: its variances are nan, as in TRL
        rows = torch.randn(len(TOKEN_ROWS), n, generator=generator)
        rows[TOKEN_ROWS.index("log_ratio")] *= 0.2
        rows[TOKEN_ROWS.index("ratio")] = rows[TOKEN_ROWS.index("log_ratio")].exp()
        tokens.append(rows)
    keep = torch.tensor([1.0, 1.0, 0.0])
    stats = minibatch_stats(tokens, torch.tensor([5.0, 1.0, 9.0]), keep, config)
    assert stats.shape == (3, len(MINIBATCH_STATS))
    for m, rows in enumerate(tokens):
        expected = naive_stats(rows, float(keep[m]), config)
        for column, name in enumerate(MINIBATCH_STATS):
            torch.testing.assert_close(stats[m, column].double(), torch.tensor(expected[name], dtype=torch.float64),
                                       atol=1e-6, rtol=1e-5, equal_nan=True, msg=name)
