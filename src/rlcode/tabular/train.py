"""``train`` and ``evaluate`` of the tabular tier: TD control, the exact optimum, checkpoints, a table.

After training the learned greedy policy is evaluated exactly on ``env.unwrapped.P`` (undiscounted
return from the start distribution under the env's time limit) and set beside the best stationary
policy's value; the gap in percent is the headline number.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlcode.errors import TrainingDiverged
from rlcode.tabular import fast, planning
from rlcode.tabular.config import CONFIGS, TabularConfig, is_frozen_lake
from rlcode.tabular.envs import NO_LIMIT_CAP, episode_horizon, make_env, transition_table
from rlcode.tabular.td_learning import greedy_policy, run_env_episodes, run_table_episodes, schedules

__all__ = ["train", "evaluate", "load_run", "make_env", "exact_value"]


def default_run_dir(config: TabularConfig) -> Path:
    """A new, empty ``runs/ALGO-ENV-seedN-TIMESTAMP-RANDOM``, created exclusively (unique per start)."""
    from rlcode.run.run_dirs import create_default_run_dir

    env = config.env.replace("/", "_").replace(":", "_")
    return create_default_run_dir(f"{config.algorithm}-{env}-seed{config.seed}")


def exact_value(table: Any, policy: np.ndarray, horizon: int | None) -> float:
    """Undiscounted expected return of a deterministic policy from the start distribution, exactly."""
    return planning.start_value(table, planning.evaluate_policy(table, policy, 1.0, horizon))


def warm_up() -> float:
    """Compile (or load from cache) the numba kernels; returns the seconds it took."""
    from rlcode.tabular.envs import TransitionTable

    start = time.perf_counter()
    ones = np.ones((1, 1, 1))
    table = TransitionTable(ones, np.zeros((1, 1, 1), np.int64), ones, np.ones((1, 1, 1), bool),
                            np.ones((1, 1), np.int64), np.ones(1))
    run_table_episodes(np.zeros((1, 1)), table, "qlearning", 0.9, lambda p: 0.1, lambda p: 0.1, 0, 1, 1, 1,
                       fast.seed_stream(0))
    fast.rollout_policy(np.zeros(1, np.int64), table.cumulative, table.outcome_counts, table.next_states,
                        table.rewards, table.terminated, np.ones(1), 1, 1, fast.seed_stream(0), np.zeros(1))
    return time.perf_counter() - start


def train(config: TabularConfig, run_dir: str | Path | None = None, quiet: bool = False, *,
          resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train ``config.algorithm`` on ``config.env``; save the Q-table and print the optimality table.

    ``run_dir`` must not hold another run (``rlcode.run.run_dirs``); ``overwrite=True`` replaces rlcode's
    files of an earlier one. Tabular runs take seconds and save once, at the end, so they have no
    resume: ``resume=True`` is refused with a message saying so.
    """
    from rlcode.configs import config_to_dict
    from rlcode.run.metrics import MetricsLogger, output_names
    from rlcode.run.run_dirs import RunDirError, check_run_dir, claim_run_dir, mark_finished, mode_of

    if resume:
        raise RunDirError("tabular runs cannot be resumed (they take seconds and save once, at their end); "
                          "train again with --run-dir DIR --overwrite, or into another --run-dir.")
    mode = mode_of(False, overwrite)
    names = ("checkpoint", "README.md", *output_names())
    if run_dir is not None:
        check_run_dir(run_dir, names, mode)  # before any work
    env = make_env(config)  # raises on non-discrete spaces before any work
    table = transition_table(env)
    if config.backend == "table" and table is None:
        raise ValueError(f"{config.env} has no transition table (env.unwrapped.P); use backend='auto' or 'env'.")
    horizon = episode_horizon(env)
    sampler = table if config.backend != "env" else None  # where training transitions come from
    if sampler is None and horizon is None:
        from gymnasium.wrappers import TimeLimit

        env = TimeLimit(env, NO_LIMIT_CAP)  # so that a policy that never terminates cannot hang training
    best = planning.optimum(table, 1.0, horizon) if table is not None else None
    run_dir = claim_run_dir(run_dir if run_dir is not None else default_run_dir(config), names, mode,
                            config.algorithm, config.env)
    compile_seconds = warm_up() if sampler is not None else 0.0

    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    rng = fast.seed_stream(config.seed)
    q = np.full((int(env.observation_space.n), int(env.action_space.n)), float(config.initial_q))  # [S, A]
    # step = TD updates (env steps), as in the other tiers; the episode count is logged beside it
    with MetricsLogger(run_dir, quiet=quiet, config=config_to_dict(config), show=(
            "rollout/episodes", "rollout/episode_return", "value/exact_value", "value/gap_percent")) as logger:
        progress = _td_loop(config, q, rng, env, sampler, table, horizon, best, logger)
    if not np.isfinite(q).all():
        raise TrainingDiverged("the Q-table holds non-finite values; lower learning_rate or initial_q. Nothing saved.")

    policy = greedy_policy(q)
    value: float | None = exact_value(table, policy, horizon) if table is not None else None
    sampled = sampled_returns(config, env, table, policy, horizon, config.eval_episodes, config.seed + 1)
    result: dict[str, Any] = progress | {
        "algorithm": config.algorithm, "env": config.env, "horizon": horizon, "compile_seconds": compile_seconds,
        "exact_value": value,
        "optimum_stationary": best.stationary if best else None,
        "optimum_time_dependent": best.time_dependent if best else None,
        "optimum_infinite_horizon": best.infinite_horizon if best else None,
        "gap_percent": planning.gap_percent(best.stationary, value) if best and value is not None else None,
        "mean_return": float(sampled.mean()) if sampled.size else float("nan"),
        "std_return": float(sampled.std()) if sampled.size else float("nan"),
        "eval_episodes": int(sampled.size), "run_dir": str(run_dir),
    }
    _save(run_dir, config, q, rng, result)
    mark_finished(run_dir)
    env.close()
    if not quiet:
        from rlcode.tabular.report import print_train_table

        print_train_table(config, result)
    return result


def _td_loop(config: TabularConfig, q: np.ndarray, rng: np.ndarray, env: Any, sampler: Any, table: Any,
             horizon: int | None, best: planning.Optimum | None, logger: Any) -> dict[str, Any]:
    """Run ``config.episodes`` episodes in ``log_points`` chunks, logging the exact value after each."""
    epsilon, learning_rate = schedules(config)
    start, updates, done, within_one_percent, returns_sum = time.perf_counter(), 0, 0, None, 0.0
    for point in range(1, config.log_points + 1):
        n_episodes = config.episodes * point // config.log_points - done
        if n_episodes == 0:
            continue
        if sampler is not None:
            chunk_updates, returns, lengths = run_table_episodes(
                q, sampler, config.algorithm, config.gamma, epsilon, learning_rate, done, n_episodes,
                config.episodes, horizon or NO_LIMIT_CAP, rng)
        else:
            chunk_updates, returns, lengths = run_env_episodes(
                q, env, config.algorithm, config.gamma, epsilon, learning_rate, done, n_episodes,
                config.episodes, rng, seed=config.seed)
        updates, done, returns_sum = updates + chunk_updates, done + n_episodes, returns_sum + float(returns.sum())
        record = {"rollout/episodes": done, "rollout/episode_return": float(returns.mean()),
                  "rollout/episode_length": float(lengths.mean()), "schedule/epsilon": epsilon(done / config.episodes),
                  "schedule/learning_rate": learning_rate(done / config.episodes)}
        if table is not None and best is not None:
            current = exact_value(table, greedy_policy(q), horizon)
            gap = planning.gap_percent(best.stationary, current)
            record |= {"value/exact_value": current, "value/gap_percent": gap}
            if within_one_percent is None and gap <= 1.0:
                within_one_percent = time.perf_counter() - start
        logger.log(updates, record)
    seconds = time.perf_counter() - start
    return {"episodes": done, "updates": updates, "train_seconds": seconds,
            "updates_per_second": updates / max(seconds, 1e-9), "seconds_to_within_1_percent": within_one_percent,
            "train_return_mean": returns_sum / max(done, 1)}


def sampled_returns(config: TabularConfig, env: Any, table: Any, policy: np.ndarray, horizon: int | None,
                    episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` greedy episodes: sampled from the table when there is one, else env.step."""
    returns = np.zeros(episodes)
    if table is not None:
        fast.rollout_policy(policy, table.cumulative, table.outcome_counts, table.next_states, table.rewards,
                            table.terminated, np.cumsum(table.initial), horizon or NO_LIMIT_CAP, episodes,
                            fast.seed_stream(seed), returns)
        return returns
    return env_returns(env, lambda state: int(policy[state]), episodes, seed)


def env_returns(env: Any, act: Any, episodes: int, seed: int) -> np.ndarray:
    """Undiscounted returns of ``episodes`` gymnasium episodes with ``act(state) -> action``."""
    returns = np.zeros(episodes)
    for episode in range(episodes):
        state, _ = env.reset(seed=seed if episode == 0 else None)
        done = False
        while not done:
            state, reward, terminated, truncated, _ = env.step(act(int(state)))
            returns[episode] += float(reward)
            done = terminated or truncated
    return returns


def _save(run_dir: Path, config: TabularConfig, q: np.ndarray, rng: np.ndarray, result: dict[str, Any]) -> None:
    from rlcode.configs import config_to_dict
    from rlcode.run.checkpoints import Checkpoint, capture_rng_state, save_checkpoint

    rng_json, _ = capture_rng_state()
    rng_json["td_stream"] = [int(word) for word in rng]
    state = {"algorithm": config.algorithm, "episodes": result["episodes"], "updates": result["updates"],
             "rng": rng_json, "result": {k: _finite_or_none(v) for k, v in result.items() if k != "run_dir"}}
    save_checkpoint(run_dir, Checkpoint(config=config_to_dict(config), tensors={"q_table": {"q_table": q}},
                                        state=state))
    from rlcode.run.model_card import write_run_card

    write_run_card(run_dir, config.algorithm, config.env, config_to_dict(config), result)


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: a non-finite float (e.g. -inf for a policy that never ends) is stored as null."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def load_run(run_dir: str | Path) -> tuple[TabularConfig, np.ndarray]:
    """The config and Q-table [S, A] of a tabular run directory."""
    from rlcode.configs import config_from_dict
    from rlcode.run.checkpoints import CheckpointError, load_checkpoint

    checkpoint = load_checkpoint(run_dir)
    algorithm = checkpoint.state.get("algorithm")
    if algorithm not in CONFIGS:
        raise CheckpointError(f"{str(run_dir)!r} holds a {algorithm!r} run, not a tabular one "
                              f"({sorted(CONFIGS)}); evaluate it with `rlcode evaluate {run_dir}`.")
    config = config_from_dict(CONFIGS[algorithm], checkpoint.config, source=f"{run_dir}/config.json")
    return config, np.asarray(checkpoint.tensors["q_table"]["q_table"])


def evaluate(run_dir: str | Path, episodes: int | None = None, deterministic: bool = True,
             seed: int | None = None, video: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """Exact value of the saved greedy policy vs the optimum, and sampled returns from gymnasium itself."""
    from rlcode.configs import check_episodes

    if episodes is not None:  # the returns are kept in memory: refuse a count that cannot fit, before any work
        check_episodes(episodes, "episodes")
    config, q = load_run(run_dir)
    env = make_env(config)
    table, horizon = transition_table(env), episode_horizon(env)
    if table is None and horizon is None:
        from gymnasium.wrappers import TimeLimit

        env = TimeLimit(env, NO_LIMIT_CAP)
    episodes = episodes or config.eval_episodes or 1000
    seed = config.seed + 2 if seed is None else seed
    policy = greedy_policy(q)
    epsilon = 0.0 if deterministic else config.epsilon_end
    probabilities = np.full(q.shape, epsilon / q.shape[1])  # [S, A] the evaluated (ε-)greedy policy
    probabilities[np.arange(q.shape[0]), policy] += 1.0 - epsilon
    best = planning.optimum(table, 1.0, horizon) if table is not None else None
    value = (planning.start_value(table, planning.evaluate_stochastic_policy(table, probabilities, 1.0, horizon))
             if table is not None else None)
    action_rng = np.random.default_rng(seed)
    act = (lambda s: int(policy[s])) if deterministic else (
        lambda s: int(action_rng.choice(q.shape[1], p=probabilities[s])))
    returns = env_returns(env, act, episodes, seed)
    env.close()
    result: dict[str, Any] = {
        "algorithm": config.algorithm, "env": config.env, "episodes": episodes, "deterministic": deterministic,
        "exact_value": value, "optimum_stationary": best.stationary if best else None,
        "optimum_time_dependent": best.time_dependent if best else None,
        "gap_percent": planning.gap_percent(best.stationary, value) if best and value is not None else None,
        "mean_return": float(returns.mean()), "std_return": float(returns.std()),
        "success_rate": float((returns > 0).mean()) if is_frozen_lake(config.env) else None,
    }
    if video is not None:
        from rlcode.run.video import record_video

        video_env = make_env(config, render_mode="rgb_array")
        result["video"] = str(record_video(video_env, lambda s: int(policy[int(s)]), video, episodes=1, seed=seed))
        video_env.close()
    if not quiet:
        from rlcode.tabular.report import print_evaluate_table

        print_evaluate_table(config, result)
    return result
