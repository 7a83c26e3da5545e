"""RLHF in one page: sample responses from a causal LM, score them in Python, PPO until the score rises.

    python examples/rlhf_demo.py [MODEL_NAME_OR_PATH]

Without an argument a tiny GPT-2 is first pre-trained on rlcode's synthetic language and saved with
save_pretrained; either way the model is loaded with from_pretrained, so any causal LM works here.
"""

import random
import sys

import torch
from transformers import AutoTokenizer

from rlcode.rlhf import CausalLMWithValueHead, PPOConfig, PPOTrainer
from rlcode.rlhf.synthetic import PROMPTS, make_pretrained


def reward(text: str) -> float:
    """Any Python function of the decoded response: here, positive minus negative words."""
    words = text.split()
    return sum(w in {"good", "great", "happy", "lovely"} for w in words) - sum(w in {"bad", "sad", "awful"} for w in words)


model_path = sys.argv[1] if len(sys.argv) > 1 else str(make_pretrained("runs/example-rlhf/pretrained")[0])
tokenizer = AutoTokenizer.from_pretrained(model_path)
tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
model = CausalLMWithValueHead.from_pretrained(model_path)

config = PPOConfig(batch_size=32, mini_batch_size=8, learning_rate=3e-4, seed=0)
trainer = PPOTrainer(config, model, tokenizer=tokenizer)  # the frozen reference is a copy of model
rng = random.Random(0)

print(f"{'step':>4} {'reward':>7} {'kl':>6} {'kl_coef':>8}")
for step in range(1, 21):
    queries = [torch.tensor(tokenizer(rng.choice(PROMPTS))["input_ids"]) for _ in range(config.batch_size)]
    responses = trainer.generate(queries, return_prompt=False, batch_size=len(queries), max_new_tokens=10,
                                 do_sample=True, top_k=0, top_p=1.0)
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    scores = [torch.tensor(float(reward(text))) for text in texts]
    stats = trainer.step(queries, responses, scores)
    mean_reward = sum(float(s) for s in scores) / len(scores)
    print(f"{step:>4} {mean_reward:>7.2f} {stats['objective/kl']:>6.2f} {stats['objective/kl_coef']:>8.4f}")

print("sample:", texts[0])
trainer.save("runs/example-rlhf/trainer")  # resume with PPOTrainer.load(...)
