"""``rlcode optimum``: the exact optimum of a tabular env, with and without its time limit."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rlcode.configs import config_from_dict

ARROWS = "←↓→↑"  # FrozenLake actions 0..3


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "optimum",
        help="exact optimum of a tabular env (value iteration on env.unwrapped.P)",
        description="Print the exact optimal start-state value of an env with a transition table: "
        "without time limit (value iteration), and under the env's TimeLimit for the best stationary "
        "policy (what a Q-table's greedy policy can reach) and the best time-dependent policy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--env", default="FrozenLake-v1", help="gymnasium id of an env with env.unwrapped.P")
    parser.add_argument("--map-size", type=int, choices=(4, 8), default=4, help="FrozenLake-v1 only: 4x4 or 8x8 map")
    parser.add_argument("--slippery", action=argparse.BooleanOptionalAction, default=True,
                        help="FrozenLake only: slippery ice (moves succeed with probability 1/3)")
    parser.add_argument("--map-desc", default=None, help="FrozenLake only: custom map, e.g. SFFF,FHFH,FFFH,HFFG")
    parser.add_argument("--max-episode-steps", type=int, default=None,
                        help="time limit; default: the env's own TimeLimit; 0: none")
    parser.add_argument("--gamma", type=float, default=1.0, help="discount of the value being optimised")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    parser.set_defaults(handler=run_optimum)


def optimum_summary(env: str = "FrozenLake-v1", map_size: int = 4, slippery: bool = True,
                    map_desc: str | None = None, max_episode_steps: int | None = None,
                    gamma: float = 1.0) -> dict[str, Any]:
    """The optimum figures of one env as a dict (what ``rlcode optimum`` prints)."""
    from rlcode.tabular import planning
    from rlcode.tabular.config import QLearningConfig
    from rlcode.tabular.envs import episode_horizon, make_env, transition_table

    config = config_from_dict(QLearningConfig, {"env": env, "map_size": map_size, "slippery": slippery,
                                                "map_desc": map_desc, "max_episode_steps": max_episode_steps,
                                                "gamma": gamma}, source="command line")
    environment = make_env(config)
    table, horizon = transition_table(environment), episode_horizon(environment)
    if table is None:
        raise ValueError(f"{env} has no transition table (env.unwrapped.P), so its exact optimum is unknown; "
                         "only toy-text envs such as FrozenLake, Taxi and CliffWalking have one.")
    best = planning.optimum(table, gamma, horizon)
    desc = getattr(environment.unwrapped, "desc", None)
    grid = None
    if desc is not None and config.env.startswith("FrozenLake"):
        rows = [[cell.decode() for cell in row] for row in desc]
        grid = ["".join(ARROWS[best.policy[r * len(row) + c]] if cell in "SF" else cell
                        for c, cell in enumerate(row)) for r, row in enumerate(rows)]
    return {"env": config.env, "gamma": gamma, "horizon": horizon, "infinite_horizon": best.infinite_horizon,
            "stationary": best.stationary, "time_dependent": best.time_dependent,
            "policy": [int(a) for a in best.policy], "policy_grid": grid}


def run_optimum(args: argparse.Namespace) -> int:
    summary = optimum_summary(args.env, args.map_size, args.slippery, args.map_desc, args.max_episode_steps,
                              args.gamma)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rlcode.tabular.report import print_optimum_table

    horizon = summary["horizon"]
    limit = f"{horizon}-step limit" if horizon else "no time limit"
    infinite = summary["infinite_horizon"]
    rows = [("no time limit (value iteration)", "unbounded" if infinite is None else f"{infinite:.4f}"),
            (f"best stationary policy, {limit}", f"{summary['stationary']:.4f}"),
            (f"best time-dependent policy, {limit}", f"{summary['time_dependent']:.4f}")]
    if summary["policy_grid"]:
        rows.append(("best stationary policy", "\n".join(summary["policy_grid"])))
    print_optimum_table(f"exact optimum of {summary['env']}, gamma={summary['gamma']}", rows)
    return 0
