"""rlcode plot: learning curves with a band across seeds, FrozenLake policy figures, errors before drawing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from rlcode.cli.app import main  # noqa: E402
from rlcode.run.checkpoints import Checkpoint, CheckpointError, save_checkpoint  # noqa: E402
from rlcode.run.metrics import EPISODE_RETURN, MetricsLogger  # noqa: E402
from rlcode.run.plots import GRID_POINTS, bootstrap_band, mean_and_band, plot_runs, read_run  # noqa: E402


def fake_run(path: Path, algorithm: str, env_id: str, returns: list[float], every: int = 1000) -> Path:
    """A run directory as `rlcode train` leaves it: checkpoint (config + state) and metrics.jsonl."""
    checkpoint = Checkpoint(config={"env_id": env_id, "seed": 0}, tensors={"model": {"w": np.zeros(1)}})
    checkpoint.state["algorithm"] = algorithm
    save_checkpoint(path, checkpoint)
    with MetricsLogger(path, quiet=True) as logger:
        for index, value in enumerate(returns):
            logger.log((index + 1) * every, {EPISODE_RETURN: value, "loss/policy": 0.1})
    return path


def _image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_bootstrap_band_matches_a_naive_loop():
    stacked = np.array(
        [[1.0, 2.0, 3.0], [3.0, 4.0, 9.0], [2.0, 6.0, 6.0], [0.0, 5.0, 4.0]]
    )  # [seeds, points]
    low, high = bootstrap_band(stacked, resamples=500, seed=7)
    picks = np.random.default_rng(7).integers(0, 4, size=(500, 4))
    for point in range(3):
        means = sorted(sum(stacked[seed, point] for seed in row) / 4 for row in picks)
        assert low[point] == pytest.approx(np.percentile(means, 2.5))
        assert high[point] == pytest.approx(np.percentile(means, 97.5))
        assert (
            stacked[:, point].min()
            <= low[point]
            <= stacked[:, point].mean()
            <= high[point]
            <= stacked[:, point].max()
        )


def test_mean_and_band_interpolate_onto_one_grid():
    steps = np.array([0.0, 10.0, 20.0])
    curves = [
        (steps, np.array([1.0, 2.0, 3.0])),
        (steps, np.array([3.0, 4.0, 9.0])),
        (steps, np.array([2.0, 6.0, 6.0])),
    ]
    grid, mean, low, high = mean_and_band(curves)
    assert grid[0] == 0 and grid[-1] == 20 and len(grid) == GRID_POINTS
    assert mean[-1] == pytest.approx(6.0) and mean[0] == pytest.approx(2.0)
    assert np.interp(10.0, grid, mean) == pytest.approx(4.0)  # (2 + 4 + 6) / 3
    assert (low <= mean + 1e-12).all() and (mean <= high + 1e-12).all()
    one = mean_and_band(curves[:1])
    assert (one[2] == one[1]).all() and (one[3] == one[1]).all()  # a single seed has no band


def test_band_covers_only_the_steps_all_seeds_reached():
    short = (np.array([0.0, 50.0]), np.array([0.0, 1.0]))
    long = (np.array([10.0, 100.0]), np.array([0.0, 1.0]))
    grid, _, _, _ = mean_and_band([short, long])
    assert grid[0] == 10 and grid[-1] == 50


def test_learning_curves_per_env_with_seeds_grouped(tmp_path):
    runs = [
        fake_run(tmp_path / f"ppo-{seed}", "ppo", "CartPole-v1", [10 + seed, 100 + 5 * seed, 400])
        for seed in range(3)
    ]
    runs.append(fake_run(tmp_path / "a2c-0", "a2c", "CartPole-v1", [20, 50, 90, 200]))
    runs.append(fake_run(tmp_path / "ppo-acrobot", "ppo", "Acrobot-v1", [-500, -200, -90]))
    written = plot_runs(runs, tmp_path / "plots")
    names = sorted(path.name for path in written)
    assert names == ["Acrobot-v1-rollout-episode_return.png", "CartPole-v1-rollout-episode_return.png"]
    pixels = _image(tmp_path / "plots" / "CartPole-v1-rollout-episode_return.png")
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500
    blue, orange = np.array([31, 119, 180]), np.array([255, 127, 14])  # matplotlib C0 (a2c) and C1 (ppo)
    assert (np.abs(pixels.astype(int) - blue).sum(-1) < 30).any()
    assert (np.abs(pixels.astype(int) - orange).sum(-1) < 30).any()


def test_metric_flag_and_missing_metric(tmp_path):
    run = fake_run(tmp_path / "run", "ppo", "CartPole-v1", [1, 2, 3])
    (path,) = plot_runs([run], tmp_path / "out", metric="loss/policy")
    assert path.name == "CartPole-v1-loss-policy.png"
    with pytest.raises(ValueError, match="did not log 'loss/nothing'"):
        plot_runs([run], tmp_path / "out", metric="loss/nothing")


def test_not_a_run_directory_fails_before_drawing(tmp_path):
    good = fake_run(tmp_path / "run", "ppo", "CartPole-v1", [1, 2])
    with pytest.raises(CheckpointError, match="not a finished run directory"):
        plot_runs([good, tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_read_run_accepts_the_checkpoint_folder(tmp_path):
    run = fake_run(tmp_path / "run", "ppo", "CartPole-v1", [1])
    assert read_run(run / "checkpoint").path == run
    assert (read_run(run).algorithm, read_run(run).env) == ("ppo", "CartPole-v1")


def test_frozen_lake_policy_figure_from_a_real_run(tmp_path):
    from rlcode.tabular.config import QLearningConfig
    from rlcode.tabular.train import train

    run_dir = tmp_path / "ql"
    train(QLearningConfig(episodes=3000, log_points=4, eval_episodes=10), run_dir=run_dir, quiet=True)
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "plots")]) == 0
    policy = _image(tmp_path / "plots" / "ql-policy.png")
    curves = _image(tmp_path / "plots" / "FrozenLake-v1-value-exact_value.png")  # tabular runs fall back
    assert policy.shape[1] > 2 * policy.shape[0]  # three panels side by side
    hole = np.array([0x30, 0x47, 0x5E])
    assert (np.abs(policy.astype(int) - hole).sum(-1) < 10).sum() > 1000  # the holes are drawn
    assert curves.std() > 0


def test_runs_that_differ_beyond_the_seed_are_separate_curves(tmp_path):
    from rlcode.run.plots import group_runs

    runs = []
    for seed, rate in [(0, 0.001), (1, 0.001), (0, 0.01)]:
        path = fake_run(tmp_path / f"run-{seed}-{rate}", "ppo", "CartPole-v1", [1, 2])
        run = read_run(path)
        runs.append(
            type(run)(
                run.path,
                run.algorithm,
                run.env,
                {**run.config, "seed": seed, "learning_rate": rate},
                run.state,
            )
        )
    grouped = group_runs(runs)
    assert {label: len(group) for label, group in grouped["CartPole-v1"].items()} == {
        "ppo learning_rate=0.001": 2,
        "ppo learning_rate=0.01": 1,
    }
