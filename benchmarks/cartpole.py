"""rlcode vs Stable-Baselines3 on CartPole-v1 with the rl-baselines3-zoo hyperparameters.

    pip install -r benchmarks/requirements.txt
    python benchmarks/cartpole.py --seeds 3 --out benchmarks/results/cartpole.json
    python benchmarks/cartpole.py --profile 25000      # where rlcode's time goes, phase by phase

Every (library, algorithm, seed) trains in its own subprocess (so peak RSS is per run), with the same
torch thread count, the same evaluation protocol (deterministic, ``--eval-episodes`` episodes on a
seeded vector env, every ``--eval-every`` env steps at an update boundary) and runs interleaved so
that machine load hits both libraries alike. Reported per run: wall time to the first evaluation
with mean return >= 475 (training time only: evaluation time is excluded for both), env steps then,
the final evaluation, env steps per second of training, and peak RSS.

Hyperparameters (rl-baselines3-zoo hyperparams/ppo.yml and a2c.yml, CartPole-v1):
  PPO: n_envs 8, n_timesteps 1e5, n_steps 32, batch_size 256, gae_lambda 0.8, gamma 0.98, n_epochs 20,
       ent_coef 0, learning_rate lin_0.001, clip_range lin_0.2 (rest SB3 defaults)
  A2C: n_envs 8, n_timesteps 5e5, ent_coef 0 (rest SB3 defaults: n_steps 5, lr 7e-4, RMSprop, gamma 0.99)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SOLVED = 475.0
ENV_ID = "CartPole-v1"
BUDGET = {"ppo": 100_000, "a2c": 500_000}
EVAL_EVERY = {"ppo": 5_000, "a2c": 10_000}


def evaluate(act: Any, episodes: int, seed: int) -> float:
    """Mean undiscounted return of one episode per env of a seeded vector env; act(obs [N, 4]) -> [N]."""
    import gymnasium
    import numpy as np

    env = gymnasium.make_vec(ENV_ID, num_envs=episodes)
    observations, _ = env.reset(seed=seed)
    returns, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while running.any():
        observations, rewards, terminated, truncated, _ = env.step(act(observations))
        returns += rewards * running
        running &= ~(terminated | truncated)
    env.close()
    return float(returns.mean())


class Clock:
    """Training wall time with evaluations cut out, and the first time an evaluation reaches SOLVED."""

    def __init__(self, eval_every: int, episodes: int, seed: int) -> None:
        self.start = time.perf_counter()
        self.paused = 0.0
        self.eval_every, self.episodes, self.seed = eval_every, episodes, seed
        self.next_eval = eval_every
        self.solved_seconds: float | None = None
        self.solved_steps: int | None = None
        self.evaluations: list[tuple[int, float]] = []

    def training_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def maybe_evaluate(self, steps: int, act: Any, force: bool = False) -> float | None:
        if steps < self.next_eval and not force:
            return None
        while self.next_eval <= steps:
            self.next_eval += self.eval_every
        elapsed = self.training_seconds()
        began = time.perf_counter()
        mean_return = evaluate(act, self.episodes, self.seed)
        self.paused += time.perf_counter() - began
        self.evaluations.append((steps, mean_return))
        if mean_return >= SOLVED and self.solved_seconds is None:
            self.solved_seconds, self.solved_steps = elapsed, steps
        return mean_return


def run_sb3(algo: str, seed: int, clock: Clock) -> tuple[int, float]:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    def linear(value: float) -> Any:
        return lambda progress_remaining: progress_remaining * value

    env = make_vec_env(ENV_ID, n_envs=8, seed=seed)
    if algo == "ppo":
        model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                    ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2), seed=seed, device="cpu")
    else:
        model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu")

    def act(observations: Any) -> Any:
        return model.predict(observations, deterministic=True)[0]

    class Evaluate(BaseCallback):
        def _on_rollout_start(self) -> None:  # after the previous update: same point as rlcode's loop
            clock.maybe_evaluate(self.num_timesteps, act)

        def _on_step(self) -> bool:
            return True

    model.learn(BUDGET[algo], callback=Evaluate())
    steps = model.num_timesteps
    seconds = clock.training_seconds()
    clock.maybe_evaluate(steps, act, force=True)
    return steps, seconds


def run_rlcode(algo: str, seed: int, clock: Clock, vector_mode: str) -> tuple[int, float]:
    from rlcode.policy_gradient.config import A2CConfig, PPOConfig
    from rlcode.policy_gradient.train import PolicyGradientRun

    # the config defaults are the zoo's CartPole-v1 values (PPO) and SB3's A2C defaults; spelled out here
    if algo == "ppo":
        config: Any = PPOConfig(env_id=ENV_ID, num_envs=8, num_steps=32, minibatch_size=256, gae_lambda=0.8,
                                gamma=0.98, num_epochs=20, entropy_coef=0.0, learning_rate=1e-3,
                                lr_schedule="linear", clip_range=0.2, clip_range_schedule="linear",
                                total_timesteps=BUDGET[algo], seed=seed, vector_mode=vector_mode)
    else:
        config = A2CConfig(env_id=ENV_ID, num_envs=8, num_steps=5, learning_rate=7e-4, optimizer="rmsprop",
                           gamma=0.99, gae_lambda=1.0, entropy_coef=0.0, total_timesteps=BUDGET[algo],
                           seed=seed, vector_mode=vector_mode)
    run = PolicyGradientRun(config)
    while not run.done:
        run.step()
        clock.maybe_evaluate(run.timesteps, run.act)
    seconds = clock.training_seconds()
    clock.maybe_evaluate(run.timesteps, run.act, force=True)
    return run.timesteps, seconds


def worker(library: str, algo: str, seed: int, threads: int, episodes: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    clock = Clock(EVAL_EVERY[algo], episodes, seed=10_000 + seed)
    if library == "sb3":
        steps, seconds = run_sb3(algo, seed, clock)
    else:
        steps, seconds = run_rlcode(algo, seed, clock, "sync" if library == "rlcode-sync" else "auto")
    assert torch.get_num_threads() == threads
    return {
        "library": library, "algorithm": algo, "seed": seed, "threads": threads,
        "seconds_to_solve": clock.solved_seconds, "steps_to_solve": clock.solved_steps,
        "final_return": clock.evaluations[-1][1], "train_seconds": seconds, "steps": steps,
        "steps_per_second": steps / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "evaluations": clock.evaluations,
    }


def profile_rlcode(algo: str, seed: int, threads: int, steps: int) -> None:
    """Where rlcode's training time goes: each phase of PolicyGradientRun.step timed on its own."""
    import torch

    from rlcode.policy_gradient.config import A2CConfig, PPOConfig
    from rlcode.policy_gradient.optim import scheduled, set_learning_rate
    from rlcode.policy_gradient.train import UPDATES, PolicyGradientRun

    torch.set_num_threads(threads)
    began = time.perf_counter()
    config: Any = PPOConfig(seed=seed) if algo == "ppo" else A2CConfig(seed=seed)  # the defaults are the zoo's
    run = PolicyGradientRun(config)
    engine = run.engine  # the fast path (fast.Engine) unless fused_update is off
    phases = {"build the run (envs, policy, optimizer)": time.perf_counter() - began,
              "collect rollouts (policy + env steps)": 0.0, "env.step alone": 0.0,
              "log-probs and values of the rollout": 0.0, "GAE": 0.0, "update (gradient steps)": 0.0}
    if algo == "a2c" and engine is not None:  # one numpy pass does all three (fast/fused_numpy.py)
        del phases["log-probs and values of the rollout"], phases["GAE"]
        phases["values + GAE + update, one numpy pass"] = phases.pop("update (gradient steps)")
    env_step = run.env.step

    def timed_step(action: Any) -> Any:
        started = time.perf_counter()
        result = env_step(action)
        phases["env.step alone"] += time.perf_counter() - started
        return result

    run.env.step = timed_step  # type: ignore[method-assign]
    module = UPDATES[algo]
    if engine is not None:
        with_policy_outputs = engine.with_policy_outputs
        update = engine.ppo_update if algo == "ppo" else engine.a2c_update
    else:
        from rlcode.policy_gradient.rollout import with_policy_outputs

        update = module.update
    while run.timesteps < steps:
        t0 = time.perf_counter()
        batch, last = run.collector.collect(config.num_steps)
        t1 = time.perf_counter()
        run.timesteps += config.rollout_size
        progress = 1.0 - run.timesteps / config.total_timesteps
        set_learning_rate(run.optimizer, scheduled(config.learning_rate, config.lr_schedule, progress))
        if algo == "a2c" and engine is not None:
            engine.learn(run.policy, run.optimizer, batch, last, config)
            timings = (t1 - t0, time.perf_counter() - t1)
        else:
            batch = with_policy_outputs(run.policy, batch, last)
            t2 = time.perf_counter()
            batch = module.prepare(batch, config)
            t3 = time.perf_counter()
            if algo == "ppo":
                clip = scheduled(config.clip_range, config.clip_range_schedule, progress)
                update(run.policy, run.optimizer, batch, config, clip_range=clip, generator=run.generator)
            else:
                update(run.policy, run.optimizer, batch, config)
            timings = (t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)
        for name, seconds in zip(list(phases)[1:2] + list(phases)[3:], timings):
            phases[name] += seconds
    total = time.perf_counter() - began
    print(f"rlcode {algo} on {ENV_ID}, seed {seed}, {run.timesteps:,} env steps, {threads} thread(s): {total:.2f} s")
    for name, seconds in phases.items():
        print(f"  {name:42s} {seconds:6.3f} s  {100 * seconds / total:5.1f} %")


def _median_range(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.3g} ({min(values):.3g}..{max(values):.3g})"


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for algo in sorted({r["algorithm"] for r in results}):
        sb3 = [r for r in results if r["algorithm"] == algo and r["library"] == "sb3"]
        sb3_median = statistics.median([r["seconds_to_solve"] for r in sb3 if r["seconds_to_solve"] is not None] or [float("nan")])
        for library in sorted({r["library"] for r in results if r["algorithm"] == algo}):
            runs = [r for r in results if r["algorithm"] == algo and r["library"] == library]
            solved = [r["seconds_to_solve"] for r in runs if r["seconds_to_solve"] is not None]
            rows.append({
                "algorithm": algo, "library": library, "runs": len(runs), "solved": len(solved),
                "seconds_to_solve": _median_range(solved),
                "speedup_vs_sb3": _median_range([sb3_median / s for s in solved]) if library != "sb3" else "1",
                "median_vs_median": f"{sb3_median / statistics.median(solved):.3g}" if solved else "-",
                "steps_to_solve": _median_range([r["steps_to_solve"] for r in runs if r["steps_to_solve"]]),
                "final_return": _median_range([r["final_return"] for r in runs]),
                # a seed "reaches 500" when some evaluation is a perfect 500; "final" counts the last one only
                "at_500": f"{sum(max(e[1] for e in r['evaluations']) >= 500 for r in runs)} reached, "
                          f"{sum(r['final_return'] >= 500 for r in runs)} final",
                "steps_per_second": _median_range([r["steps_per_second"] for r in runs]),
                "peak_rss_mb": _median_range([r["peak_rss_mb"] for r in runs]),
                "all_final_500": all(r["final_return"] >= 500 for r in runs),
            })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = ["algorithm", "library", "solved", "seconds_to_solve", "speedup_vs_sb3", "median_vs_median", "steps_to_solve",
               "final_return", "at_500", "steps_per_second", "peak_rss_mb"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-|-".join("-" * widths[c] for c in columns))
    for row in rows:
        cells = {**row, "solved": f"{row['solved']}/{row['runs']}"}
        print(" | ".join(str(cells[c]).ljust(widths[c]) for c in columns))
    print("cells: median (min..max) over seeds; speedup = SB3 median seconds_to_solve / each rlcode seed's; "
          "median_vs_median = SB3 median / this library's median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--algorithms", default="ppo,a2c")
    parser.add_argument("--libraries", default="sb3,rlcode", help="any of sb3, rlcode, rlcode-sync")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for every library")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write every run and the summary as JSON")
    parser.add_argument("--profile", type=int, metavar="STEPS", default=0,
                        help="instead of the comparison: time each phase of rlcode's training for STEPS env steps")
    parser.add_argument("--worker", nargs=3, metavar=("LIBRARY", "ALGORITHM", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        library, algo, seed = args.worker
        print(json.dumps(worker(library, algo, int(seed), args.threads, args.eval_episodes)))
        return
    if args.profile:
        for algo in args.algorithms.split(","):
            profile_rlcode(algo, 0, args.threads, args.profile)
        return
    results = []
    load_before = os.getloadavg()
    for seed in range(args.seeds):
        for algo in args.algorithms.split(","):
            for library in args.libraries.split(","):
                command = [sys.executable, __file__, "--worker", library, algo, str(seed),
                           "--threads", str(args.threads), "--eval-episodes", str(args.eval_episodes)]
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
                output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
                result = json.loads(output.strip().splitlines()[-1])
                results.append(result)
                print(f"{library:11s} {algo} seed {seed}: solved at {result['seconds_to_solve']} s "
                      f"({result['steps_to_solve']} steps), final {result['final_return']:.1f}, "
                      f"{result['steps_per_second']:,.0f} steps/s, {result['peak_rss_mb']:.0f} MB", flush=True)
    rows = summarise(results)
    print()
    print_table(rows)
    load = {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()}
    print(f"load average before {load_before[0]:.2f}, after {load['after'][0]:.2f} on {load['cpus']} CPUs")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": rows, "runs": results, "load": load}, indent=2))


if __name__ == "__main__":
    main()
