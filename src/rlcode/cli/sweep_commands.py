"""``rlcode sweep ALGO --env ENV --seeds 5 --grid key=v1,v2 --set key=value --backend local|ray``."""

from __future__ import annotations

import argparse
import sys

from rlcode.algorithms import ALGORITHMS
from rlcode.configs import ConfigError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train many seeds and grid points in parallel (local process pool or Ray Tune)",
        description=(
            "Train ALGORITHM once per seed and grid point, each trial in its own run directory OUT/trials/NAME; "
            "write OUT/results.jsonl and print mean, IQM and a bootstrap CI across seeds per grid point. "
            "Running the same command again resumes: finished trials are skipped."
        ),
        epilog="example: rlcode sweep ppo --env CartPole-v1 --seeds 5 --grid learning_rate=3e-4,1e-3 --workers 2",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("algorithm", metavar="ALGORITHM", choices=sorted(ALGORITHMS), help="one of %(choices)s")
    parser.add_argument("--env", default=None, help="environment id (sets the config's env field)")
    parser.add_argument("--seeds", default="5", help="number of seeds N (seeds S..S+N-1, S from --set seed=S, "
                        "else 0) or a comma-separated list of seeds")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a config field and the values to try (';' between values of a list field); repeatable")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="a config field fixed for every trial; repeatable")
    parser.add_argument("--config", metavar="FILE", default=None, help="TOML/JSON file of base config values")
    parser.add_argument("--backend", choices=["local", "ray", "serial"], default="local",
                        help="local: process pool; ray: Ray Tune trials (pip install 'rlcode[ray]'); "
                        "serial: one after another in this process")
    parser.add_argument("--workers", type=int, default=None, help="trials at once (default: CPU count)")
    parser.add_argument("--out", default=None, metavar="DIR", help="sweep directory (default: runs/sweep-ALGO-ENV)")
    parser.add_argument("--metric", default=None, help="result key to summarise (default: the mean return)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary table")
    parser.set_defaults(handler=_run_sweep)


def _seeds(text: str) -> int | list[int]:
    try:
        return [int(s) for s in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise ValueError(f"--seeds {text!r} is neither a count nor a comma-separated list of integers.") from None


def _run_sweep(args: argparse.Namespace) -> int:
    from rlcode.algorithms import config_class

    if args.workers is not None and args.workers < 1:  # 0 used to mean "all CPUs" without saying so
        raise ConfigError(f"--workers {args.workers} is invalid: allowed an integer >= 1; omit --workers to use "
                          "every CPU, or pass how many trials may run at once.")
    from rlcode.sweeps.sweeps import parse_assignment, print_summary, run_sweep, split_grid_values

    cls = config_class(args.algorithm)
    grid: dict[str, list[str]] = {}
    for item in args.grid:
        key, values = parse_assignment(item)
        grid[key] = split_grid_values(cls, key, values)
    overrides = dict(parse_assignment(item) for item in args.overrides)
    try:
        result = run_sweep(args.algorithm, env=args.env, seeds=_seeds(args.seeds), grid=grid, overrides=overrides,
                           backend=args.backend, workers=args.workers, out_dir=args.out, metric=args.metric,
                           config_file=args.config, quiet=args.quiet)
    except ModuleNotFoundError as error:  # --backend ray without Ray installed
        print(f"rlcode: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep interrupted; finished trials are saved. Run the same command again to resume.",
              file=sys.stderr)
        return 130
    print_summary(result)
    return 1 if result.failed else 0
