"""The tabular tier's figures of one run: FrozenLake's map with the learned greedy policy beside an
optimal stationary one, and the exact state values of the learned policy as a heat map.

``rlcode plot`` draws them through the algorithm registry (``Algorithm.figures``), beside the
learning curves of ``rlcode.run.plots``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlcode.run.plots import Run, load_pyplot, slug
from rlcode.tabular import planning
from rlcode.tabular.envs import episode_horizon, transition_table
from rlcode.tabular.td_learning import greedy_policy
from rlcode.tabular.train import load_run, make_env

ARROWS = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}  # FrozenLake: left, down, right, up as (dx, dy)
TILE_COLOURS = {"S": "#cfe8ff", "F": "#eef6ff", "H": "#30475e", "G": "#8fd694"}


def run_figures(run: Run, out_dir: Path) -> list[Path]:
    """The figures ``rlcode plot`` adds for one tabular run: the policy figure on FrozenLake."""
    return [plot_frozen_lake(run, out_dir)] if run.env.split("/")[-1].startswith("FrozenLake") else []


def plot_frozen_lake(run: Run, out_dir: Path) -> Path:
    """Learned greedy policy | an optimal stationary policy | exact values of the learned policy."""
    config, q = load_run(run.path)
    env = make_env(config)
    table, horizon = transition_table(env), episode_horizon(env)
    if table is None:
        raise ValueError(
            f"{run.env} has no transition table (env.unwrapped.P); cannot draw its exact values."
        )
    desc = np.asarray(env.unwrapped.desc).astype(str)  # [rows, cols] of S/F/H/G
    env.close()
    learned = greedy_policy(q)
    best = planning.optimum(table, 1.0, horizon)
    values = planning.evaluate_policy(table, learned, 1.0, horizon)  # [S] exact, under the time limit
    learned_value = planning.start_value(table, values)

    plt = load_pyplot()
    rows, cols = desc.shape
    size = 3.2 if rows <= 4 else 4.2
    figure, axes = plt.subplots(1, 3, figsize=(3 * size + 1.2, size + 1.1), dpi=120, layout="constrained")
    differs = learned != best.policy
    _draw_policy(axes[0], desc, learned, differs, f"learned greedy policy\nexact value {learned_value:.4f}")
    _draw_policy(
        axes[1], desc, best.policy, differs, f"optimal stationary policy\nexact value {best.stationary:.4f}"
    )
    limit = f" ({horizon}-step limit)" if horizon else ""
    _draw_values(figure, axes[2], desc, values, f"exact state values of the\nlearned policy{limit}")
    slippery = "slippery" if config.slippery else "not slippery"
    title = f"{run.algorithm} on {run.env} {rows}x{cols}, {slippery}: {run.path.name}"
    if differs.any():
        title += "\norange squares: the policies differ there (ties can make both optimal)"
    figure.suptitle(title, fontsize=10)
    path = out_dir / f"{slug(run.path.name)}-policy.png"
    figure.savefig(path)
    plt.close(figure)
    return path


def _draw_map(axes: Any, desc: np.ndarray, letters: bool = True) -> None:
    from matplotlib.patches import Rectangle

    rows, cols = desc.shape
    for r in range(rows):
        for c in range(cols):
            axes.add_patch(Rectangle((c, r), 1, 1, facecolor=TILE_COLOURS[desc[r, c]], edgecolor="white"))
            if letters and desc[r, c] in "SG":
                axes.text(c + 0.1, r + 0.22, desc[r, c], fontsize=8, fontweight="bold", color="#333333")
    axes.set_xlim(0, cols)
    axes.set_ylim(rows, 0)  # row 0 at the top, as gymnasium draws the lake
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])


def _draw_policy(axes: Any, desc: np.ndarray, policy: np.ndarray, differs: np.ndarray, title: str) -> None:
    from matplotlib.patches import Rectangle

    _draw_map(axes, desc)
    rows, cols = desc.shape
    for state, action in enumerate(policy):
        r, c = divmod(state, cols)
        if desc[r, c] in "HG":  # terminal: no action is ever taken there
            continue
        if differs[state]:
            axes.add_patch(
                Rectangle((c + 0.04, r + 0.04), 0.92, 0.92, fill=False, edgecolor="#f28e2b", linewidth=2)
            )
        dx, dy = ARROWS[int(action)]
        axes.annotate(
            "",
            xy=(c + 0.5 + 0.3 * dx, r + 0.5 + 0.3 * dy),
            xytext=(c + 0.5 - 0.3 * dx, r + 0.5 - 0.3 * dy),
            arrowprops={"arrowstyle": "-|>", "color": "#1f3b57", "linewidth": 1.8},
        )
    axes.set_title(title, fontsize=9)


def _draw_values(figure: Any, axes: Any, desc: np.ndarray, values: np.ndarray, title: str) -> None:
    """Heat map of the values of non-terminal states; holes and goals keep their map colours."""
    rows, cols = desc.shape
    terminal = np.isin(desc, ["H", "G"])
    grid = np.ma.masked_array(values.reshape(rows, cols), mask=terminal)
    _draw_map(axes, desc, letters=False)
    top = max(1e-9, float(grid.max()))
    image = axes.imshow(grid, cmap="viridis", vmin=0.0, vmax=top, extent=(0, cols, rows, 0), zorder=2)
    for r in range(rows):
        for c in range(cols):
            if terminal[r, c]:
                axes.text(
                    c + 0.5,
                    r + 0.5,
                    desc[r, c],
                    ha="center",
                    va="center",
                    color="white" if desc[r, c] == "H" else "#1b4d1b",
                    zorder=3,
                )
                continue
            colour = "white" if grid[r, c] < 0.6 * top else "black"
            size = 8 if cols <= 4 else 6
            axes.text(
                c + 0.5,
                r + 0.5,
                f"{grid[r, c]:.2f}",
                ha="center",
                va="center",
                fontsize=size,
                color=colour,
                zorder=3,
            )
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
