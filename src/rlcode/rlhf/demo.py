"""End-to-end RLHF: a causal LM, sampled responses, a Python reward, PPO until the reward rises.

With no ``model`` the demo first pre-trains a tiny GPT-2 on the project's synthetic language
(``rlcode.rlhf.synthetic``) and saves it with ``save_pretrained``; either way the policy and its
tokenizer are then loaded with ``from_pretrained``, so any causal LM on disk (or on a reachable hub)
goes through the same code. The reward counts positive minus negative words in the decoded response.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch

from rlcode.configs import ConfigError
from rlcode.rlhf import require_lm

require_lm()  # before synthetic imports transformers: a missing lm extra is one line naming the pip command
from rlcode.rlhf.synthetic import PROMPTS, make_pretrained, sentiment_reward  # noqa: E402

COLUMNS = ("step", "reward", "kl", "kl_coef", "policy_loss", "value_loss", "seconds")


def _check_local_model(name_or_path: str | Path) -> None:
    """A --model that is a path must be a folder; otherwise transformers reports a bad Hub repo id."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = isinstance(name_or_path, Path) or path.is_absolute() or text.startswith((".", "~")) \
        or text.count("/") > 1 or path.exists()
    if looks_like_path and not path.is_dir():
        state = "is a file" if path.exists() else "does not exist"
        raise ConfigError(
            f"--model {text!r} {state}; pass a folder written by save_pretrained (or a Hub id such as 'gpt2')."
        )


def load_policy(name_or_path: str | Path) -> tuple[Any, Any]:
    """(CausalLMWithValueHead, tokenizer) through ``from_pretrained``; pad falls back to eos, like GPT-2's."""
    from transformers import AutoTokenizer

    from rlcode.rlhf import CausalLMWithValueHead

    _check_local_model(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return CausalLMWithValueHead.from_pretrained(name_or_path), tokenizer


def run_demo(
    out: str | Path = "runs/rlhf-demo",
    steps: int = 20,
    model: str | None = None,
    batch_size: int = 32,
    mini_batch_size: int = 8,
    response_length: int = 10,
    learning_rate: float = 3e-4,
    init_kl_coef: float = 0.2,
    pretrain_steps: int = 500,
    seed: int = 0,
    reward_function: Callable[[str], float] = sentiment_reward,
    prompts: list[str] | None = None,
    quiet: bool = False,
    stream: TextIO | None = None,
) -> list[dict[str, float]]:
    """Run the demo; returns one row per PPO step (the columns of ``COLUMNS``) and saves the trainer."""
    from rlcode.rlhf import PPOConfig, PPOTrainer, set_seed
    from rlcode.run.metrics import MetricsLogger

    out = Path(out)
    say = (lambda *_: None) if quiet else (lambda *a: print(*a, file=stream, flush=True))
    if model is None:
        started = time.perf_counter()
        path, losses = make_pretrained(out / "pretrained", steps=pretrain_steps, seed=seed)
        model = str(path)
        say(f"pre-trained a tiny GPT-2 on the synthetic language: loss {losses[0]:.2f} -> "
            f"{sum(losses[-20:]) / 20:.2f} in {time.perf_counter() - started:.1f} s; saved to {model}")
    set_seed(seed)  # the value head is initialised inside from_pretrained: seed first, so runs repeat
    policy, tokenizer = load_policy(model)
    config = PPOConfig(batch_size=batch_size, mini_batch_size=mini_batch_size, learning_rate=learning_rate,
                       init_kl_coef=init_kl_coef, seed=seed)
    trainer = PPOTrainer(config, policy, tokenizer=tokenizer)
    sample: dict[str, Any] = dict(max_new_tokens=response_length, do_sample=True, top_k=0, top_p=1.0)
    prompt_rng = random.Random(seed)
    prompts = prompts or PROMPTS
    encoded = {p: torch.tensor(tokenizer(p)["input_ids"]) for p in prompts}
    logger = MetricsLogger(run_dir=out, total_steps=steps, quiet=True)

    say(f"PPO on '{model}': batch {batch_size}, {response_length} new tokens, reward = {reward_function.__name__}")
    say(f"{'step':>4} {'reward':>8} {'kl':>8} {'kl_coef':>8} {'pg_loss':>8} {'vf_loss':>8} {'seconds':>8}")
    rows = []
    for step in range(1, steps + 1):
        started = time.perf_counter()
        batch = [prompt_rng.choice(prompts) for _ in range(batch_size)]
        queries = [encoded[p] for p in batch]
        responses = trainer.generate(queries, **sample)
        texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        scores = [float(reward_function(t)) for t in texts]
        stats = trainer.step(queries, responses, scores)
        row = dict(zip(COLUMNS, (step, sum(scores) / len(scores), float(stats["objective/kl"]),
                                 float(stats["objective/kl_coef"]), float(stats["ppo/loss/policy"]),
                                 float(stats["ppo/loss/value"]), time.perf_counter() - started)))
        rows.append(row)
        logger.log(step, {k: v for k, v in row.items() if k != "step"})
        say(f"{step:>4} {row['reward']:>8.3f} {row['kl']:>8.3f} {row['kl_coef']:>8.4f} {row['policy_loss']:>8.4f} "
            f"{row['value_loss']:>8.4f} {row['seconds']:>8.2f}")
        if step == 1 or step == steps:
            say(f"     e.g. '{batch[0]}' -> '{texts[0]}'")
    saved = trainer.save(out / "trainer")
    first, last = rows[0]["reward"], sum(r["reward"] for r in rows[-3:]) / min(3, len(rows))
    say(f"mean reward {first:.2f} (step 1) -> {last:.2f} (mean of the last 3 steps); trainer saved to {saved}")
    return rows
