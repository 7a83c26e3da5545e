"""RLHF on several processes: the ordinary PPOTrainer loop, each process on its share of the batch.

    python examples/distributed_rlhf.py                                   # one process
    torchrun --nproc_per_node 2 examples/distributed_rlhf.py              # 2 CPU processes (gloo)
    torchrun --nproc_per_node 8 examples/distributed_rlhf.py              # 8 GPUs (NCCL)
    accelerate launch --multi_gpu --num_processes 2 examples/distributed_rlhf.py
Several nodes and accelerate config files: docs/scale-out.md.
"""

import random
import sys
from pathlib import Path

import torch

from rlcode.rlhf import PPOConfig, PPOTrainer, distributed, set_seed
from rlcode.rlhf.demo import load_policy
from rlcode.rlhf.synthetic import PROMPTS, make_pretrained, sentiment_reward

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 8
MODEL = Path("runs/distributed-rlhf/pretrained")

distributed.init_from_environment()  # a no-op when started with plain `python`
if distributed.is_main_process() and not (MODEL / "config.json").exists():
    make_pretrained(MODEL, steps=300)  # a tiny GPT-2 on the project's synthetic language, no download
distributed.barrier()  # the others wait until rank 0 has written the model

config = PPOConfig(batch_size=32, mini_batch_size=8, learning_rate=5e-4, init_kl_coef=0.1)
set_seed(config.seed)  # the value head is freshly initialised: seed it for a reproducible run
policy, tokenizer = load_policy(MODEL)
trainer = PPOTrainer(config, policy.to(distributed.device()), tokenizer=tokenizer)  # checks 32 % world size
# Each process samples its own prompts and responses; numpy's RNG, which orders the minibatches of
# the global batch, stays seeded alike everywhere (PPOTrainer set it from config.seed).
prompt_rng = random.Random(distributed.rank())
torch.manual_seed(config.seed + 1000 * distributed.rank())
prompts = {p: torch.tensor(tokenizer(p)["input_ids"]) for p in PROMPTS}

for step in range(1, STEPS + 1):
    queries = [prompts[prompt_rng.choice(PROMPTS)] for _ in range(trainer.local_batch_size)]
    responses = trainer.generate(queries, return_prompt=False, batch_size=len(queries), max_new_tokens=10,
                                 do_sample=True, top_k=0, top_p=1.0)
    scores = [sentiment_reward(text) for text in tokenizer.batch_decode(responses, skip_special_tokens=True)]
    stats = trainer.step(queries, responses, scores)  # KL, score moments and metrics are all-reduced
    if distributed.is_main_process():
        print(f"step {step}: {distributed.world_size()} process(es), mean reward {stats['ppo/mean_scores']:.2f}, "
              f"kl {stats['objective/kl']:.3f}, kl_coef {stats['objective/kl_coef']:.4f}")

if distributed.is_main_process():
    trainer.save("runs/distributed-rlhf/trainer")
distributed.shutdown()  # barrier first: gloo can hang at exit without it
