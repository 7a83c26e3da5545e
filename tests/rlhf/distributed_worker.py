"""Run PPOTrainer.step on a fixed global batch and save its statistics and weights (rank 0).

Launched by tests/rlhf/test_distributed.py twice: as a plain process, and under
``torchrun --nproc_per_node 2`` where each process passes its share of the same global batch.
Writes OUT/SCENARIO.json (stats of every step) and OUT/SCENARIO.safetensors (final weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import GPT2Config

from rlcode.rlhf import distributed
from rlcode.rlhf.config import PPOConfig
from rlcode.rlhf.ppo_trainer import PPOTrainer
from rlcode.rlhf.value_head import CausalLMWithValueHead

VOCAB = 40
SCENARIOS = {
    # every statistic that steers training: adaptive KL, running score moments, whitened rewards,
    # minibatches that straddle both processes, gradient accumulation and clipping
    "adaptive": dict(batch_size=8, mini_batch_size=2, gradient_accumulation_steps=2, ppo_epochs=2,
                     learning_rate=1e-3, init_kl_coef=0.3, target=0.5, horizon=100.0, use_score_scaling=True,
                     use_score_norm=True, score_clip=2.0, whiten_rewards=True, max_grad_norm=1.0),
    "full_kl": dict(batch_size=4, mini_batch_size=4, ppo_epochs=3, learning_rate=3e-3, kl_penalty="full",
                    adap_kl_ctrl=False, no_grad_batch_size=1, early_stopping=True, target_kl=0.01),
}


def global_batch(step: int, size: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Ragged queries and responses with random scores; identical in every process."""
    generator = torch.Generator().manual_seed(1000 + step)
    lengths = torch.randint(1, 7, (size, 2), generator=generator)
    queries = [torch.randint(3, VOCAB, (int(n),), generator=generator) for n in lengths[:, 0]]
    responses = [torch.randint(3, VOCAB, (int(n),), generator=generator) for n in lengths[:, 1]]
    scores = list(torch.randn(size, generator=generator))
    return queries, responses, scores


def run(name: str, steps: int, out: Path) -> None:
    config = PPOConfig(seed=7, **SCENARIOS[name])
    torch.manual_seed(0)
    model = CausalLMWithValueHead.from_config(
        GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2, eos_token_id=2, pad_token_id=0)
    )
    trainer = PPOTrainer(config, model)
    initial = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    share = trainer.local_batch_size
    start = distributed.rank() * share
    history = []
    for step in range(steps):
        queries, responses, scores = global_batch(step, config.batch_size)
        stats = trainer.step(queries[start : start + share], responses[start : start + share],
                             scores[start : start + share])
        history.append({k: np.asarray(v).tolist() for k, v in stats.items() if not k.startswith("time/")})
        history[-1]["kl_coef_after"] = trainer.kl_controller.value
    if distributed.is_main_process():
        (out / f"{name}.json").write_text(json.dumps(history))
        save_file({k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                  str(out / f"{name}.safetensors"))
        save_file(initial, str(out / f"{name}.initial.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # No init_process_group and no teardown here: a one-process script runs unchanged, PPOTrainer
    # joins the process group torchrun describes and ends it (barrier first) at interpreter exit.
    for name in SCENARIOS:
        run(name, args.steps, args.out)
    try:  # the world-size check, where it can fail: 2 processes cannot split 5 rows
        PPOTrainer(PPOConfig(batch_size=5, mini_batch_size=1), CausalLMWithValueHead.from_config(
            GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=8, n_layer=1, n_head=1)))
        message = "no error"
    except ValueError as error:
        message = str(error)
    if distributed.is_main_process():
        (args.out / "indivisible.txt").write_text(message)
    print(f"rank {distributed.rank()} done", file=sys.stderr)


if __name__ == "__main__":
    main()
