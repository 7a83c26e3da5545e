"""Where GRPO's KL variants converge on rlcode's exactly solvable task (``rlcode rlhf-optimum``).

    python benchmarks/grpo_fixed_points.py [--beta 0.5] [--steps 3000]

Not a timing: an analysis of what each objective's fixed point is. The policy is written as exact
per-state tables (the task has 3-token responses over 5 tokens, so every state is enumerable) and
each variant's surrogate is ascended with its *exact* expected gradient (no sampling), then compared
with a closed-form prediction found by backward induction over the response tokens:

* ``k1-reward``: β·Σ_t log(π/π_ref) subtracted from the reward (rlcode's ``kl_in_reward=True``):
  the sequence-level objective, whose maximiser is π* ∝ π_ref·exp(r/β): gap 0.
* ``k3-loss``: β·k3 per token in the loss (TRL's ``use_bias_correction_kl=False``): the gradient of
  KL(π_ref ‖ π) at each state with the states held fixed; per state π(a|s) = β·π_ref(a|s)/(λ_s − Q(s,a)).
* ``k3-loss-ratio``: the same times the importance weight (TRL 1.16's default): the gradient of
  KL(π ‖ π_ref) per state, states held fixed; per state π(a|s) ∝ π_ref(a|s)·exp(Q(s,a)/β).

Q(s, a) is the expected reward after choosing a in s, under π, with no KL term for later tokens —
which is why neither in-loss form reaches π*. With std scaling the advantages are divided by each
prompt's reward std (GRPO's default scaling), which multiplies Q by 1/σ_x, i.e. changes β per prompt.
For ``k3-loss-ratio`` with std scaling the damped self-consistent iteration and the ascent disagree
(the policy sharpens, σ_x shrinks, β_eff with it): the table then says "no match" and only the
ascent's gap is a measurement.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch

VARIANTS = ("k1-reward", "k3-loss", "k3-loss-ratio")


def tables(beta: float):
    from rlcode.rlhf import optimum

    prompts, responses = torch.tensor(optimum.PROMPTS), optimum.all_responses()
    ref = optimum.response_log_probs(optimum.reference_model(), prompts, responses).double()
    rewards = optimum.rewards(prompts, responses).double()
    return optimum, ref, rewards, optimum.optimal_value(ref, rewards, beta), optimum.kl_objective(ref, ref, rewards, beta)


def conditionals(sequence_log_probs: torch.Tensor, prompts: int, vocab: int) -> list[torch.Tensor]:
    """log π(y1|x), log π(y2|x,y1), log π(y3|x,y1,y2) from the [P, V^3] sequence table."""
    p = sequence_log_probs.exp().reshape(prompts, vocab, vocab, vocab)
    first, second = p.sum((2, 3)), p.sum(3)
    return [first.log(), (second / first[..., None]).log(), (p / second[..., None]).log()]


def sequence_log_probs(c: list[torch.Tensor]) -> torch.Tensor:
    return (c[0][:, :, None, None] + c[1][:, :, :, None] + c[2]).reshape(c[0].shape[0], -1)


def reward_std(log_probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    w = log_probs.exp()
    return (w * (rewards - (w * rewards).sum(-1, keepdim=True)) ** 2).sum(-1, keepdim=True).sqrt()   # [P, 1]


def ascend(variant: str, std: bool, ref: torch.Tensor, rewards: torch.Tensor, beta: float, steps: int) -> torch.Tensor:
    """Per-state logits ascended with the exact expected gradient of the variant's surrogate."""
    prompts, vocab = ref.shape[0], round(ref.shape[1] ** (1 / 3))
    ref_c = conditionals(ref, prompts, vocab)
    logits = [c.clone().requires_grad_(True) for c in ref_c]
    optimizer = torch.optim.Adam(logits, lr=0.05)
    shape = (prompts, vocab, vocab, vocab)
    expand = [lambda t: t[:, :, None, None].expand(shape), lambda t: t[:, :, :, None].expand(shape), lambda t: t]
    ref_tokens = [f(c) for f, c in zip(expand, ref_c)]
    for _ in range(steps):
        c = [logit.log_softmax(-1) for logit in logits]
        log_probs = sequence_log_probs(c)                                     # [P, N]
        weights = log_probs.detach().exp()                                    # the sampling distribution
        scores = rewards - beta * (log_probs.detach() - ref) if variant == "k1-reward" else rewards
        advantages = scores - (weights * scores).sum(-1, keepdim=True)
        if std:
            advantages = advantages / reward_std(log_probs.detach(), rewards)
        surrogate = (weights * advantages * log_probs).sum()
        if variant != "k1-reward":
            tokens = [f(t) for f, t in zip(expand, c)]
            k3 = [(r - t).exp() - (r - t) - 1 for t, r in zip(tokens, ref_tokens)]
            if variant == "k3-loss-ratio":
                k3 = [(t - t.detach()).exp() * k for t, k in zip(tokens, k3)]
            surrogate = surrogate - beta * (weights * sum(k3).reshape(prompts, -1)).sum()
        optimizer.zero_grad()
        (-surrogate).backward()
        optimizer.step()
    return sequence_log_probs([logit.detach().log_softmax(-1) for logit in logits])


def predict(variant: str, std: bool, ref: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The fixed point by backward induction over the three tokens (iterated for the std's self-consistency)."""
    prompts, vocab = ref.shape[0], round(ref.shape[1] ** (1 / 3))
    ref_c = conditionals(ref, prompts, vocab)
    if variant == "k1-reward":
        return (ref + rewards / beta).log_softmax(-1)
    table = rewards.reshape(prompts, vocab, vocab, vocab)
    sigma = torch.ones(prompts, dtype=torch.float64)

    def solve(ref_log: torch.Tensor, q_values: torch.Tensor) -> torch.Tensor:
        q = q_values / sigma.reshape(-1, *([1] * (q_values.dim() - 1)))
        if variant == "k3-loss-ratio":
            return (ref_log + q / beta).log_softmax(-1)
        low = q.max(-1, keepdim=True).values + 1e-12  # π = β·ref/(λ − q), λ > max q, Σπ = 1 by bisection
        high = low + beta + 10
        for _ in range(200):
            middle = (low + high) / 2
            total = (beta * ref_log.exp() / (middle - q)).sum(-1, keepdim=True)
            low, high = torch.where(total > 1, middle, low), torch.where(total > 1, high, middle)
        pi = beta * ref_log.exp() / (high - q)
        return (pi / pi.sum(-1, keepdim=True)).log()

    for _ in range(200 if std else 1):
        c2 = solve(ref_c[2], table)
        v2 = (c2.exp() * table).sum(-1)
        c1 = solve(ref_c[1], v2)
        v1 = (c1.exp() * v2).sum(-1)
        c0 = solve(ref_c[0], v1)
        log_probs = sequence_log_probs([c0, c1, c2])
        sigma = 0.5 * sigma + 0.5 * reward_std(log_probs, rewards).squeeze(-1)  # damped: the plain map oscillates
    return log_probs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=3000, help="exact-gradient ascent steps per variant")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optimum, ref, rewards, best, start = tables(args.beta)  # the task's float32 model, then float64 maths
    torch.set_default_dtype(torch.float64)
    print(f"beta {args.beta}: J* = {best:.4f}, J(pi_ref) = {start:.4f}; gap = 100 (J* - J) / (J* - J(pi_ref))")
    print(f"{'variant':<15} {'std':>5} | {'ascent gap %':>12} {'predicted %':>11} {'max |d log pi|':>14}")
    for variant in VARIANTS:
        for std in (False, True):
            ascended = ascend(variant, std, ref, rewards, args.beta, args.steps)
            predicted = predict(variant, std, ref, rewards, args.beta)
            gaps = [optimum.gap_percent(best, optimum.kl_objective(lp, ref, rewards, args.beta), start)
                    for lp in (ascended, predicted)]
            difference = float((ascended - predicted).abs().max())
            if not difference < 0.1:  # the prediction is not where the ascent went: say so, claim nothing
                print(f"{variant:<15} {str(std):>5} | {gaps[0]:>12.2f} {'no match':>11} {difference:>14.1e}")
                continue
            print(f"{variant:<15} {str(std):>5} | {gaps[0]:>12.2f} {gaps[1]:>11.2f} {difference:>14.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
