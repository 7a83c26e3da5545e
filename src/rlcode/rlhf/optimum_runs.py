"""PPO, GRPO and RLOO on the exactly solvable task of ``rlcode.rlhf.optimum``, scored by the exact gap.

Each run samples with the trainer's own ``generate`` (plain sampling, exactly RESPONSE_LENGTH tokens:
the model has no eos), scores the responses with r(x, y), calls ``step`` and then measures J(π) by
enumeration, so the gap to the optimum is known after every step. The settings in ``RUNS`` reach a
gap of a few percent within their step budget (tests/rlhf/test_optimum.py holds them to it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from rlcode.rlhf import optimum
from rlcode.rlhf.config import PPOConfig
from rlcode.rlhf.grpo_config import GRPOConfig
from rlcode.rlhf.grpo_trainer import GRPOTrainer
from rlcode.rlhf.ppo_trainer import PPOTrainer, default_optimizer
from rlcode.rlhf.value_head import CausalLMWithValueHead


@dataclass(frozen=True)
class RunSettings:
    """One algorithm's run: what it is, its step budget and the trainer's hyperparameters (β aside)."""

    description: str
    steps: int
    generations: int  # G: responses per prompt and step (the batch is P·G)
    learning_rate: float
    options: tuple[tuple[str, Any], ...] = ()  # further PPOConfig/GRPOConfig fields


RUNS: dict[str, RunSettings] = {
    "ppo": RunSettings("PPOTrainer, fixed KL coefficient β, k1 per token in the reward, gamma = lam = 1",
                       steps=100, generations=64, learning_rate=1e-3,
                       options=(("ppo_epochs", 2), ("mini_batch_size", 128))),
    "grpo": RunSettings("GRPOTrainer grpo, Dr. GRPO advantages (no std), β·Σ_t k1 in the reward",
                        steps=150, generations=64, learning_rate=2e-3,
                        options=(("estimator", "dr_grpo"), ("kl_in_reward", True), ("kl_estimator", "k1"))),
    "rloo": RunSettings("GRPOTrainer rloo, leave-one-out advantages, β·Σ_t k1 in the reward",
                        steps=150, generations=64, learning_rate=2e-3),
    "grpo-trl": RunSettings("GRPOTrainer grpo with TRL's defaults: group-std advantages, β·ratio·k3 in the loss",
                            steps=150, generations=64, learning_rate=2e-3),
}
ALGORITHMS = tuple(RUNS)


def exact_state(beta: float) -> dict[str, Any]:
    """The task's tables and the two reference numbers: prompts, responses, r [P, N], log π_ref [P, N], J*, J(π_ref)."""
    prompts, responses = torch.tensor(optimum.PROMPTS), optimum.all_responses()
    reward_table = optimum.rewards(prompts, responses)
    ref_log_probs = optimum.response_log_probs(optimum.reference_model(), prompts, responses)
    return {"prompts": prompts, "responses": responses, "rewards": reward_table, "ref_log_probs": ref_log_probs,
            "optimum": optimum.optimal_value(ref_log_probs, reward_table, beta),
            "reference": optimum.kl_objective(ref_log_probs, ref_log_probs, reward_table, beta)}


def _trainer(algorithm: str, beta: float, seed: int, model: CausalLMWithValueHead) -> PPOTrainer | GRPOTrainer:
    settings = RUNS[algorithm]
    options = dict(settings.options)
    trained = model if algorithm == "ppo" else model.pretrained_model  # GRPO never trains the value head
    optimizer = default_optimizer([p for p in trained.parameters() if p.requires_grad], settings.learning_rate)
    if algorithm == "ppo":
        batch = len(optimum.PROMPTS) * settings.generations
        ppo = PPOConfig(exp_name="rlhf-optimum", seed=seed, learning_rate=settings.learning_rate, batch_size=batch,
                        adap_kl_ctrl=False, init_kl_coef=beta, gamma=1.0, lam=1.0, **options)
        return PPOTrainer(ppo, model, optimizer=optimizer)
    config = GRPOConfig(algorithm="rloo" if algorithm == "rloo" else "grpo", num_generations=settings.generations,
                        learning_rate=settings.learning_rate, beta=beta, seed=seed, **options)
    return GRPOTrainer(config, model, optimizer=optimizer)


def _sample(trainer: PPOTrainer | GRPOTrainer, generations: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """P·G responses of exactly RESPONSE_LENGTH tokens from the policy's own distribution, query-major."""
    prompts = optimum.prompt_tensors()
    sampling: dict[str, Any] = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                                    max_new_tokens=optimum.RESPONSE_LENGTH)
    if isinstance(trainer, GRPOTrainer):
        return prompts, trainer.generate(prompts, num_generations=generations, **sampling)
    queries = [prompt for prompt in prompts for _ in range(generations)]
    return queries, trainer.generate(queries, batch_size=len(queries), return_prompt=False, **sampling)


def response_indices(responses: torch.Tensor) -> torch.Tensor:
    """Row numbers in ``all_responses()`` of responses [B, L] (a response is its index written in base V)."""
    powers = optimum.VOCAB_SIZE ** torch.arange(responses.shape[1] - 1, -1, -1)
    return (responses * powers).sum(-1)


def train(algorithm: str, beta: float = optimum.DEFAULT_BETA, steps: int | None = None, seed: int = 0,
          exact: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run from π_ref; returns J*, J(π_ref), the final J, the gap after every step and the seconds taken."""
    if algorithm not in RUNS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}.")
    settings = RUNS[algorithm]
    steps = settings.steps if steps is None else steps
    exact = exact_state(beta) if exact is None else exact
    model = optimum.reference_model()
    start = time.time()
    trainer = _trainer(algorithm, beta, seed, model)
    # a short warm-up (Adam's first steps are sign steps of a noisy gradient), then linear decay to 0
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        trainer.optimizer, lambda done: min(1.0, (done + 1) / warmup) * (1.0 - done / steps))
    prompt_rows = torch.arange(len(optimum.PROMPTS)).repeat_interleave(settings.generations)   # [P·G]
    values, gaps = [], []
    for _ in range(steps):
        queries, responses = _sample(trainer, settings.generations)
        scores = exact["rewards"][prompt_rows, response_indices(torch.stack(responses))]       # [P·G]
        trainer.step(queries, responses, list(scores))
        schedule.step()
        log_probs = optimum.response_log_probs(trainer.model, exact["prompts"], exact["responses"])
        values.append(optimum.kl_objective(log_probs, exact["ref_log_probs"], exact["rewards"], beta))
        gaps.append(optimum.gap_percent(exact["optimum"], values[-1], exact["reference"]))
    return {"algorithm": algorithm, "description": settings.description, "beta": beta, "seed": seed,
            "steps": steps, "generations": settings.generations, "learning_rate": settings.learning_rate,
            "optimum": exact["optimum"], "reference": exact["reference"], "final": values[-1] if values else
            exact["reference"], "gap_percent": gaps[-1] if gaps else 100.0, "gap_curve": gaps,
            "seconds": time.time() - start}
