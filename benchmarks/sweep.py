"""Seeds of CartPole PPO one after another vs a local process pool vs Ray Tune: wall time and peak memory.

    python benchmarks/sweep.py                      # 4 seeds, 2 workers, serial/local/ray, table
    python benchmarks/sweep.py --out benchmarks/results/sweep.json

Each backend runs in a fresh child process (so imports and start-up count, as for a user), while this
process samples the child's whole process tree (pool workers, Ray's raylet/GCS/workers) every 0.2 s.
Peak memory is the largest sum of PSS over the tree (shared library pages split between processes, so
the sum is what the machine really held) and, beside it, the sum of RSS. Also checks that every backend
gave the same returns for the same seeds. Needs psutil (installed with accelerate or ray).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def child(args: argparse.Namespace) -> None:
    from rlcode.sweeps import run_sweep

    start = time.perf_counter()
    result = run_sweep("ppo", "CartPole-v1", args.seeds, overrides={"total_timesteps": args.timesteps},
                       backend=args.child, workers=args.workers, out_dir=args.sweep_dir, quiet=True)
    returns = {r["trial"]: r["result"].get("mean_return") if r["status"] == "ok" else r["error"] for r in result.records}
    print(json.dumps({"sweep_seconds": time.perf_counter() - start, "returns": returns}))


def tree_memory(root: Any) -> tuple[float, float, int]:
    """(sum of PSS, sum of RSS, process count) over ``root`` and all its descendants, in MiB."""
    import psutil

    pss = rss = 0.0
    count = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pss += getattr(info, "pss", info.rss) / 2**20
        rss += info.rss / 2**20
        count += 1
    return pss, rss, count


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    with tempfile.TemporaryDirectory() as sweep_dir:
        command = [sys.executable, __file__, "--child", mode, "--sweep-dir", sweep_dir, "--seeds", str(args.seeds),
                   "--timesteps", str(args.timesteps), "--workers", str(args.workers)]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        root = psutil.Process(process.pid)
        peak = {"pss": 0.0, "rss": 0.0, "processes": 0}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                pss, rss, count = tree_memory(root)
                peak.update(pss=max(peak["pss"], pss), rss=max(peak["rss"], rss),
                            processes=max(peak["processes"], count))
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, stderr = process.communicate()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    if process.returncode:
        raise RuntimeError(f"backend {mode} failed (exit {process.returncode}):\n{stderr[-3000:]}")
    report = json.loads(stdout.strip().splitlines()[-1])
    return {"backend": mode, "wall_seconds": wall, "sweep_seconds": report["sweep_seconds"],
            "peak_pss_mib": peak["pss"], "peak_rss_sum_mib": peak["rss"], "peak_processes": peak["processes"],
            "returns": report["returns"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--timesteps", type=int, default=50_000, help="PPO total_timesteps per seed")
    parser.add_argument("--workers", type=int, default=2, help="trials at once for the local and ray backends")
    parser.add_argument("--backends", default="serial,local,ray")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sweep-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    load_before = os.getloadavg()
    rows = [measure(mode, args) for mode in args.backends.split(",")]
    load_after = os.getloadavg()
    same = all(row["returns"] == rows[0]["returns"] for row in rows)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.seeds} seeds of PPO on CartPole-v1, {args.timesteps:,} steps each, "
                        f"{args.workers} workers, {os.cpu_count()} CPUs")
    for column in ("backend", "wall s", "sweep s", "speed-up", "peak PSS MiB", "peak RSS-sum MiB", "processes"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    serial = next((r["wall_seconds"] for r in rows if r["backend"] == "serial"), rows[0]["wall_seconds"])
    for row in rows:
        table.add_row(row["backend"], f"{row['wall_seconds']:.1f}", f"{row['sweep_seconds']:.1f}",
                      f"{serial / row['wall_seconds']:.2f}x", f"{row['peak_pss_mib']:.0f}",
                      f"{row['peak_rss_sum_mib']:.0f}", str(row["peak_processes"]))
    console = Console()
    console.print(table)
    console.print(f"same returns on every backend: {same}; load average before {load_before[0]:.2f}, "
                  f"after {load_after[0]:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "same_returns": same, "load_before": load_before,
                                        "load_after": load_after, "cpus": os.cpu_count(), "seeds": args.seeds,
                                        "timesteps": args.timesteps, "workers": args.workers}, indent=2))


if __name__ == "__main__":
    main()
