"""Rich tables printed at the end of ``rlcode train``/``evaluate``/``optimum`` for the tabular tier."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from rlcode.tabular.config import TabularConfig, is_frozen_lake


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a (no transition table)" if value is None else f"{value:.{digits}f}"


def _frozen_lake_map(config: TabularConfig) -> str:
    """The map ``make_env`` builds: map_desc, else map_size for FrozenLake-v1, else the id's own map
    (FrozenLake8x8-v1 is registered with map_name="8x8" and ignores map_size)."""
    if config.map_desc is not None:
        return config.map_desc
    if config.env.split("/")[-1] == "FrozenLake-v1":
        return f"{config.map_size}x{config.map_size}"
    import gymnasium as gym

    try:
        return str(gym.spec(config.env).kwargs.get("map_name", "4x4"))  # FrozenLakeEnv's default map
    except gym.error.Error:
        return "custom map"


def _env_label(config: TabularConfig, horizon: Any = "") -> str:
    label = config.env
    if is_frozen_lake(config.env):
        label += f" {_frozen_lake_map(config)}"
        label += " slippery" if config.slippery else " not slippery"
    return label + (f", {horizon}-step limit" if horizon else "")


def print_train_table(config: TabularConfig, result: dict[str, Any]) -> None:
    table = Table(title=f"{config.algorithm} on {_env_label(config, result['horizon'])}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("optimum (best stationary policy, exact)", _number(result["optimum_stationary"]))
    table.add_row("optimum (best time-dependent policy)", _number(result["optimum_time_dependent"]))
    table.add_row("learned greedy policy (exact value)", _number(result["exact_value"]))
    gap = result["gap_percent"]
    table.add_row("gap to optimum", "n/a" if gap is None else f"{gap:.2f} %")
    table.add_row(f"sampled mean return ({result['eval_episodes']} episodes)", f"{result['mean_return']:.4f}")
    table.add_row("episodes", f"{result['episodes']:,}")
    table.add_row("updates", f"{result['updates']:,}")
    table.add_row("wall time (training)", f"{result['train_seconds']:.2f} s")
    table.add_row("numba compile/cache load (once)", f"{result['compile_seconds']:.2f} s")
    table.add_row("updates/s", f"{result['updates_per_second']:,.0f}")
    if result["seconds_to_within_1_percent"] is not None:
        table.add_row("time until within 1 % (at a log point)", f"{result['seconds_to_within_1_percent']:.3f} s")
    console = Console()
    console.print(table)
    console.print(f"saved to {result['run_dir']} (evaluate with `rlcode evaluate {result['run_dir']}`)", soft_wrap=True)


def print_evaluate_table(config: TabularConfig, result: dict[str, Any]) -> None:
    policy = "greedy" if result["deterministic"] else f"epsilon-greedy (epsilon={config.epsilon_end})"
    table = Table(title=f"{config.algorithm} {policy} policy on {_env_label(config)}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("optimum (best stationary policy, exact)", _number(result["optimum_stationary"]))
    table.add_row("this policy (exact value)", _number(result["exact_value"]))
    gap = result["gap_percent"]
    table.add_row("gap to optimum", "n/a" if gap is None else f"{gap:.2f} %")
    table.add_row(f"sampled mean return ({result['episodes']} gymnasium episodes)",
                  f"{result['mean_return']:.4f} ± {result['std_return']:.4f}")
    if result["success_rate"] is not None:
        table.add_row("sampled success rate", f"{100 * result['success_rate']:.1f} %")
    if "video" in result:
        table.add_row("video", result["video"])
    Console().print(table)


def print_optimum_table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
