"""Tabular Q-learning on FrozenLake 4x4 (slippery, 100-step limit): rlcode vs a tutorial-style loop.

    python benchmarks/tabular.py                          # 5 repeats, table
    python benchmarks/tabular.py --out benchmarks/results/tabular.json

The tutorial-style loop is what the Gymnasium/Hugging Face tutorials write: ``env.step`` per update,
ε-greedy with ``np.random``, the update in numpy. rlcode samples the same transitions from
``env.unwrapped.P`` in a numba loop. Both use the same hyperparameters (rlcode's defaults: γ = 0.995,
ε 1 → 0.1 over half the episodes, α 0.1 → 0.005 exponentially). Measured, medians over repeats:

- updates/s over a full training run (rlcode: the default 100,000 episodes; tutorial: 5,000 episodes);
- wall time until the greedy policy's exact value is within 1 % of the best stationary optimum
  (0.7402), with a 20,000-episode schedule, the exact value checked every 250 episodes (the check's
  time counts); the tutorial loop is cut at --cap seconds;
- the numba compile on a cold cache and the load from a warm cache, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlcode.tabular import fast, planning
from rlcode.tabular.config import QLearningConfig
from rlcode.tabular.envs import episode_horizon, make_env, transition_table
from rlcode.tabular.td_learning import greedy_policy, run_table_episodes, schedules
from rlcode.tabular.train import exact_value, warm_up

CHECK_EVERY = 250  # episodes between exact evaluations in the time-to-optimum runs


def tutorial_episodes(env: Any, q: np.ndarray, config: QLearningConfig, first: int, count: int, total: int,
                      rng: np.random.Generator) -> int:
    """Tutorial-style Q-learning: env.step per update, plain numpy; returns the number of updates."""
    epsilon, learning_rate = schedules(config)
    updates = 0
    for episode in range(first, first + count):
        eps, alpha = epsilon(episode / total), learning_rate(episode / total)
        state, _ = env.reset()
        done = False
        while not done:
            if rng.random() < eps:
                action = int(env.action_space.sample())
            else:  # argmax with random tie-breaking, as the Gymnasium tutorial does
                best = np.flatnonzero(q[state] == q[state].max())
                action = int(rng.choice(best))
            next_state, reward, terminated, truncated, _ = env.step(action)
            target = reward + (0.0 if terminated else config.gamma * q[next_state].max())
            q[state, action] += alpha * (target - q[state, action])
            state, done, updates = next_state, terminated or truncated, updates + 1
    return updates


def updates_per_second(loop: str, seed: int) -> float:
    config = QLearningConfig(seed=seed)
    env = make_env(config)
    table, horizon = transition_table(env), episode_horizon(env)
    q = np.zeros((16, 4))
    start = time.perf_counter()
    if loop == "rlcode":
        epsilon, learning_rate = schedules(config)
        updates, _, _ = run_table_episodes(q, table, "qlearning", config.gamma, epsilon, learning_rate, 0,
                                           config.episodes, config.episodes, horizon, fast.seed_stream(seed))
    else:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        updates = tutorial_episodes(env, q, config, 0, 5000, config.episodes, np.random.default_rng(seed))
    return updates / (time.perf_counter() - start)


def seconds_to_within_one_percent(loop: str, seed: int, cap: float) -> tuple[float | None, int]:
    """Wall time (and updates) until the greedy policy is within 1 % of the optimum; None past the cap."""
    config = QLearningConfig(seed=seed, episodes=20_000)
    env = make_env(config)
    table, horizon = transition_table(env), episode_horizon(env)
    optimum = planning.optimum(table, 1.0, horizon).stationary
    epsilon, learning_rate = schedules(config)
    q, rng, np_rng = np.zeros((16, 4)), fast.seed_stream(seed), np.random.default_rng(seed)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    start, updates = time.perf_counter(), 0
    for first in range(0, config.episodes, CHECK_EVERY):
        if loop == "rlcode":
            updates += run_table_episodes(q, table, "qlearning", config.gamma, epsilon, learning_rate, first,
                                          CHECK_EVERY, config.episodes, horizon, rng)[0]
        else:
            updates += tutorial_episodes(env, q, config, first, CHECK_EVERY, config.episodes, np_rng)
        if planning.gap_percent(optimum, exact_value(table, greedy_policy(q), horizon)) <= 1.0:
            return time.perf_counter() - start, updates
        if time.perf_counter() - start > cap:
            break
    return None, updates


def compile_seconds() -> dict[str, float]:
    """numba compile on a cold cache, then the load from the warm cache, each in a fresh process."""
    code = "from rlcode.tabular.train import warm_up; print(warm_up())"
    with tempfile.TemporaryDirectory() as cache:
        environment = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold, warm = (float(subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True,
                                           text=True, check=True).stdout.split()[-1]) for _ in range(2))
    return {"cold_compile_seconds": cold, "cached_load_seconds": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement (medians reported)")
    parser.add_argument("--cap", type=float, default=30.0, help="seconds before a time-to-optimum run is cut")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    warm_up()

    results: dict[str, Any] = {"env": "FrozenLake-v1 4x4 slippery, 100-step limit", "repeats": args.repeats,
                               "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                               "load_average_at_start": os.getloadavg()[0]}
    for loop in ("rlcode", "tutorial"):
        rates = [updates_per_second(loop, seed) for seed in range(args.repeats)]
        timed = [seconds_to_within_one_percent(loop, seed, args.cap) for seed in range(args.repeats)]
        seconds = [t for t, _ in timed]
        reached = [t for t in seconds if t is not None]
        results[loop] = {
            "updates_per_second": rates, "updates_per_second_median": statistics.median(rates),
            "seconds_to_within_1_percent": seconds, "updates_to_within_1_percent": [u for _, u in timed],
            # runs cut at the cap count as the cap, so the median is a lower bound if any were cut
            "seconds_to_within_1_percent_median": statistics.median(t if t is not None else args.cap
                                                                    for t in seconds),
            "reached": len(reached),
        }
    results |= compile_seconds()
    fast_, slow = results["rlcode"], results["tutorial"]
    rows = [
        ("updates/s (median)", f"{fast_['updates_per_second_median']:,.0f}",
         f"{slow['updates_per_second_median']:,.0f}",
         f"{fast_['updates_per_second_median'] / slow['updates_per_second_median']:,.0f}x"),
        ("s until within 1 % of optimum (median)", f"{fast_['seconds_to_within_1_percent_median']:.3f}",
         f"{slow['seconds_to_within_1_percent_median']:.3f}" + ("" if slow["reached"] == args.repeats else
                                                                 f" ({slow['reached']}/{args.repeats} reached)"),
         f"{slow['seconds_to_within_1_percent_median'] / fast_['seconds_to_within_1_percent_median']:,.0f}x"),
        ("updates until within 1 % (median)",
         f"{statistics.median(fast_['updates_to_within_1_percent']):,.0f}",
         f"{statistics.median(slow['updates_to_within_1_percent']):,.0f}", ""),
    ]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Q-learning, {results['env']}, medians of {args.repeats}")
    for column in ("", "rlcode (numba, table)", "tutorial (env.step)", "ratio"):
        table.add_column(column, justify="right" if column else "left")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"numba compile, once per checkout: {results['cold_compile_seconds']:.2f} s cold, "
                  f"{results['cached_load_seconds']:.2f} s loading the cache")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
