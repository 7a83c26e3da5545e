"""``rlcode rlhf-demo``: pre-train a tiny GPT-2 (or load any causal LM) and run PPO on a Python reward."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rlhf-demo",
        help="end-to-end PPO on a causal LM with a Python reward function",
        description="Pre-train a tiny GPT-2 on a synthetic language (or load --model with from_pretrained), "
        "sample responses, score them (positive minus negative words) and run PPOTrainer.step until the "
        "mean reward rises; prints a per-step table and saves the trainer to OUT/trainer.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=20, help="PPO steps")
    parser.add_argument("--out", default="runs/rlhf-demo", help="run directory (pretrained model, metrics, trainer)")
    parser.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                        help="any from_pretrained-loadable causal LM; default: pre-train a tiny GPT-2 first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mini-batch-size", type=int, default=8)
    parser.add_argument("--response-length", type=int, default=10, help="new tokens per response")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--init-kl-coef", type=float, default=0.2)
    parser.add_argument("--pretrain-steps", type=int, default=500, help="pre-training steps of the tiny GPT-2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    parser.set_defaults(handler=run_rlhf_demo)


def run_rlhf_demo(args: argparse.Namespace) -> int:
    for name in ("steps", "batch_size", "mini_batch_size", "response_length", "pretrain_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    from rlcode.rlhf.demo import run_demo  # MissingExtra (one line, exit status 2) without the lm extra

    run_demo(out=args.out, steps=args.steps, model=args.model, batch_size=args.batch_size,
             mini_batch_size=args.mini_batch_size, response_length=args.response_length,
             learning_rate=args.learning_rate, init_kl_coef=args.init_kl_coef,
             pretrain_steps=args.pretrain_steps, seed=args.seed, quiet=args.quiet)
    return 0
