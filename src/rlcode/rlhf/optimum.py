"""An LLM RL problem small enough to solve exactly: every response enumerated, the KL-regularised optimum known.

The policy is a tiny GPT-2 over ``VOCAB_SIZE`` tokens, built from a config with a fixed seed; each of
``PROMPTS`` is answered by exactly ``RESPONSE_LENGTH`` tokens, so there are V^L = 125 responses per
prompt, and π(y|x) = Π_t π(y_t | x, y_<t) is one batched forward away. For the KL-regularised objective

    J(π) = mean_x Σ_y π(y|x) [r(x, y) − β log(π(y|x) / π_ref(y|x))]

the maximiser is π*(y|x) ∝ π_ref(y|x)·exp(r(x, y)/β) with J* = β·mean_x log Σ_y π_ref(y|x) exp(r(x, y)/β)
(Korbak et al. 2022; Rafailov et al. 2023, eq. 4), and J* − J(π) = β·mean_x KL(π(·|x) ‖ π*(·|x)).
``gap_percent`` measures a policy by the share of the way from π_ref to π* still to go.
"""

from __future__ import annotations

import itertools

import torch
from transformers import GPT2Config

from rlcode.rlhf.value_head import CausalLMWithValueHead

VOCAB_SIZE = 5
RESPONSE_LENGTH = 3
PROMPTS = ((0, 1), (1, 2), (2, 3), (3, 4))
DEFAULT_BETA = 0.5
MODEL_SEED = 0


def reference_model(seed: int = MODEL_SEED) -> CausalLMWithValueHead:
    """The reference (and initial) policy: a 2-layer GPT-2 over VOCAB_SIZE tokens, seeded weights.

    No eos, bos or pad id: nothing stops a response early, every token may be sampled, and token 0
    is not taken for padding (the rows are never padded: every prompt and response has one length). The weights are
    drawn wider than GPT-2's 0.02 so that π_ref is far from uniform (entropy ≈ 4 nats of log 125 ≈ 4.8).
    """
    config = GPT2Config(vocab_size=VOCAB_SIZE, n_positions=8, n_embd=64, n_layer=2, n_head=2,
                        initializer_range=0.1, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(seed)
    model = CausalLMWithValueHead.from_config(config)
    model.pretrained_model.generation_config.eos_token_id = None
    model.pretrained_model.generation_config.bos_token_id = None
    return model.eval()  # GPT-2's dropout off: every probability here is the deterministic one


def prompt_tensors() -> list[torch.Tensor]:
    return [torch.tensor(prompt) for prompt in PROMPTS]


def all_responses(vocab_size: int = VOCAB_SIZE, length: int = RESPONSE_LENGTH) -> torch.Tensor:
    """Every response, [V^L, L], in lexicographic order (row i is i written in base V)."""
    return torch.tensor(list(itertools.product(range(vocab_size), repeat=length)))


def rewards(prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """r(x, y) for prompts [P, Lq] and responses [N, L]; returns [P, N].

    1 when the response contains the prompt's last token anywhere, plus 0.5 when it opens and closes
    with the same token. Neither part is a sum of per-token rewards: a second hit adds nothing, and
    the bonus depends on two positions at once.
    """
    hits = (responses[None, :, :] == prompts[:, None, -1:]).any(-1)                  # [P, N]
    bonus = (responses[:, 0] == responses[:, -1]).expand_as(hits)                    # [P, N]
    return hits.float() + 0.5 * bonus.float()


@torch.no_grad()
def response_log_probs(model: CausalLMWithValueHead, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """log π(y|x) = Σ_t log π(y_t | x, y_<t) of every response [N, L] to every prompt [P, Lq]; returns [P, N]."""
    model.eval()
    count, width = len(responses), prompts.shape[1]
    input_ids = torch.cat([prompts.repeat_interleave(count, 0), responses.repeat(len(prompts), 1)], 1)  # [P·N, Lq+L]
    outputs = model.pretrained_model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    logits = outputs.logits[:, width - 1 : -1].float()                                                  # [P·N, L, V]
    tokens = input_ids[:, width:, None]                                                                  # [P·N, L, 1]
    return logits.log_softmax(-1).gather(-1, tokens).squeeze(-1).sum(-1).reshape(len(prompts), count)


def kl_objective(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> float:
    """J(π) = mean_x Σ_y π(y|x) [r − β (log π − log π_ref)] from [P, N] tables of log π, log π_ref and r."""
    probs = log_probs.exp()
    return float((probs * (rewards - beta * (log_probs - ref_log_probs))).sum(-1).mean())


def optimal_log_probs(ref_log_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """log π*(y|x) with π* ∝ π_ref·exp(r/β), [P, N]."""
    return (ref_log_probs + rewards / beta).log_softmax(-1)


def optimal_value(ref_log_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> float:
    """J* = β·mean_x log Σ_y π_ref(y|x) exp(r(x, y)/β)."""
    return float(beta * torch.logsumexp(ref_log_probs + rewards / beta, -1).mean())


def gap_percent(optimum: float, value: float, reference: float) -> float:
    """100·(J* − J(π)) / (J* − J(π_ref)): 100 at the reference policy, 0 at the optimum.

    Unlike the tabular tier's ``planning.gap_percent`` (relative to |optimum|), the scale here is the
    improvement the KL-regularised optimum offers over π_ref: J* itself shifts with any constant
    added to r, and J(π_ref) is where every run starts.
    """
    return float(100.0 * (optimum - value) / (optimum - reference))
