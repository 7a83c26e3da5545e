"""``rlcode tour``: one short run of each tier, ending in one summary table.

1. Q-learning on FrozenLake-v1, judged by the greedy policy's exact value against the optimum.
2. PPO on CartPole-v1 with rl-zoo's hyperparameters, judged by a deterministic evaluation (500 is the maximum).
3. The RLHF demo: PPO on a tiny pre-trained GPT-2 with a Python reward, judged by the rise in reward
   and the KL to the reference model.

The RLHF part needs the lm extra (``pip install 'rlcode[lm]'``); with the core install alone it is
skipped with the one line saying so, and the first two parts still run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

TASKS = {  # the task column of the summary, per tier
    "tabular": "Q-learning, FrozenLake-v1 4x4 slippery",
    "policy gradient": "PPO, CartPole-v1 (rl-zoo hyperparameters)",
    "RLHF": "PPOTrainer.step on a tiny GPT-2, Python reward",
}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tour",
        help="train one agent of each tier (tabular, PPO, RLHF) and print a summary",
        description="Q-learning on FrozenLake to the verified optimum, PPO on CartPole to 500, and the RLHF "
        "demo with rising reward; a few minutes on 2 CPU cores. Run directories go under --out. The RLHF part "
        "needs pip install 'rlcode[lm]' and is skipped without it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="runs/tour", help="parent directory of the three run directories")
    parser.add_argument("--seed", type=int, default=0, help="seed of all three runs")
    parser.add_argument("--rlhf-steps", type=int, default=20, help="PPO steps of the RLHF demo")
    parser.add_argument("--quiet", action="store_true", help="print only the summary table")
    parser.set_defaults(handler=run_tour)


def _tabular(out: Path, seed: int, quiet: bool) -> dict[str, Any]:
    from rlcode.tabular.config import QLearningConfig
    from rlcode.tabular.train import train

    result = train(QLearningConfig(env="FrozenLake-v1", seed=seed), run_dir=out / "qlearning-frozenlake", quiet=quiet)
    return {
        "tier": "tabular",
        "task": TASKS["tabular"],
        "result": f"exact value {result['exact_value']:.4f} vs optimum {result['optimum_stationary']:.4f} "
        f"(gap {result['gap_percent']:.2f} %)",
        "passed": result["gap_percent"] <= 1.0,
    }


def _ppo(out: Path, seed: int, quiet: bool) -> dict[str, Any]:
    from rlcode.policy_gradient.config import PPOConfig
    from rlcode.policy_gradient.train import train

    config = PPOConfig(env_id="CartPole-v1", seed=seed, eval_every=10_000)
    result = train(config, run_dir=out / "ppo-cartpole", quiet=quiet)
    first_solved = next((e["step"] for e in result["evaluations"] if e["mean_return"] >= 475), None)
    solved = f", first eval >= 475 at {first_solved:,} steps" if first_solved is not None else ""
    return {
        "tier": "policy gradient",
        "task": TASKS["policy gradient"],
        "result": f"deterministic return {result['mean_return']:.1f} ± {result['std_return']:.1f}{solved} "
        f"({result['steps_per_second']:,.0f} steps/s)",
        "passed": result["mean_return"] >= 475,
    }


def _rlhf(out: Path, seed: int, steps: int, quiet: bool) -> dict[str, Any]:
    from rlcode.rlhf import require_lm

    require_lm()  # MissingExtra before any work: the tour reports the part as skipped
    from rlcode.rlhf.demo import run_demo

    rows = run_demo(out=out / "rlhf-demo", steps=steps, seed=seed, quiet=quiet)
    head = sum(r["reward"] for r in rows[:3]) / min(3, len(rows))
    tail = sum(r["reward"] for r in rows[-3:]) / min(3, len(rows))
    max_kl = max(r["kl"] for r in rows)
    return {
        "tier": "RLHF",
        "task": TASKS["RLHF"],
        "result": f"mean reward {head:.2f} -> {tail:.2f} (first/last 3 steps), max KL {max_kl:.2f}",
        "passed": tail > head,
    }


def run_tour(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from rlcode.extras import MissingExtra

    if args.rlhf_steps < 3:
        raise ValueError(f"--rlhf-steps must be at least 3 to compare first and last steps, got {args.rlhf_steps}.")
    out = Path(args.out)
    rows = []
    for label, tier, run in (
        ("Q-learning on FrozenLake-v1", "tabular", lambda: _tabular(out, args.seed, args.quiet)),
        ("PPO on CartPole-v1", "policy gradient", lambda: _ppo(out, args.seed, args.quiet)),
        ("RLHF demo", "RLHF", lambda: _rlhf(out, args.seed, args.rlhf_steps, args.quiet)),
    ):
        if not args.quiet:
            print(f"\n=== {label} ===", flush=True)
        started = time.perf_counter()
        try:
            row = run()
        except MissingExtra as error:  # an extra is not installed: skip this part, run the others
            if not args.quiet:
                print(f"skipped: {error}", flush=True)
            row = {"tier": tier, "task": TASKS[tier], "result": f"skipped: {error}", "passed": None}
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
    table = Table(title=f"rlcode tour (run directories under {out})")
    for column in ("tier", "task", "result", "wall time", "target"):
        table.add_column(column)
    marks = {True: "[green]reached[/green]", False: "[red]missed[/red]", None: "[yellow]skipped[/yellow]"}
    for row in rows:
        table.add_row(row["tier"], row["task"], escape(row["result"]), f"{row['seconds']:.1f} s",
                      marks[row["passed"]])
    console = Console()
    if not console.is_terminal:
        console.width = 140
    console.print(table)
    return 1 if any(row["passed"] is False for row in rows) else 0  # a skipped part is no failure
