"""train() and evaluate() for REINFORCE, A2C and PPO, and the run state that checkpoints capture.

``PolicyGradientRun`` holds what lives between updates (policy, optimizer, envs, sampler RNG,
normaliser, counters); ``step()`` is one rollout plus one update, and ``save``/``load`` make a resumed
run continue bit for bit (same torch thread count, sync or natively vectorised envs).

The one place that chooses between the reference path (``learn``: rollout.py, ppo.py / a2c.py /
reinforce.py, torch.optim) and the fast engine (``fast.Engine``, same contracts): once per run, from
``config.fused_update``; the run holds the engine.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from rlcode.batch import TensorBatch
from rlcode.policy_gradient import a2c, fast, ppo, reinforce
from rlcode.policy_gradient.actor_critic import ActorCritic
from rlcode.policy_gradient.config import A2CConfig, PolicyGradientConfig, PPOConfig, ReinforceConfig
from rlcode.policy_gradient.envs import (
    check_against_spaces,
    env_spaces,
    make_vector_env,
    restore_env,
    snapshot_env,
)
from rlcode.policy_gradient.normalize import Normalizer
from rlcode.policy_gradient.optim import make_optimizer, scheduled, set_learning_rate
from rlcode.policy_gradient.rollout import RolloutCollector, rollout_statistics, with_policy_outputs

__all__ = ["PolicyGradientRun", "train", "evaluate", "evaluate_policy", "CONFIGS"]

CONFIGS: dict[str, type[PolicyGradientConfig]] = {"reinforce": ReinforceConfig, "a2c": A2CConfig, "ppo": PPOConfig}
UPDATES: dict[str, ModuleType] = {"reinforce": reinforce, "a2c": a2c, "ppo": ppo}


def build_policy(config: PolicyGradientConfig, observation_space: Any, action_space: Any) -> ActorCritic:
    continuous = not hasattr(action_space, "n")
    return ActorCritic(
        observation_size=int(np.prod(observation_space.shape)),
        action_size=int(action_space.shape[0]) if continuous else int(action_space.n),
        continuous=continuous,
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        shared_trunk=config.shared_trunk,
        orthogonal_init=config.orthogonal_init,
        log_std_init=config.log_std_init or 0.0,
    )


def learn(policy: ActorCritic, optimizer: Any, rollout: TensorBatch, last_observations: torch.Tensor,
          config: PolicyGradientConfig, **options: Any) -> dict[str, float]:
    """One update from a raw rollout on the reference path: the policy's log-probabilities and values,
    advantages, the algorithm's update; ``options`` are PPO's clip_range and generator.
    (``fast.Engine.learn`` does the same on the fast path.)"""
    module = UPDATES[config.algorithm]
    batch = module.prepare(with_policy_outputs(policy, rollout, last_observations), config)
    return module.update(policy, optimizer, batch, config, **options) | rollout_statistics(batch)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class PolicyGradientRun:
    """One training run's state; built fresh from a config, or from a checkpoint with ``load``."""

    def __init__(self, config: PolicyGradientConfig, reset_envs: bool = True) -> None:
        observation_space, action_space = env_spaces(config.env_id)
        check_against_spaces(config, observation_space, action_space)  # before any env is stepped
        self.config = config
        torch.set_num_threads(config.torch_threads)
        seed_everything(config.seed)
        self.policy = build_policy(config, observation_space, action_space)
        parameters = list(self.policy.parameters())
        self.optimizer: Any
        self.engine: fast.Engine | None = None  # the fast path, chosen here once
        if getattr(config, "fused_update", False):
            self.optimizer = fast.make_optimizer(parameters, config.optimizer, config.learning_rate, config.optimizer_eps)
            if fast.unsupported_reason(self.policy, self.optimizer) is None:
                self.engine = fast.Engine(self.policy, self.optimizer)
        if self.engine is None:
            self.optimizer = make_optimizer(parameters, config.optimizer, config.learning_rate, config.optimizer_eps)
        self.generator = torch.Generator().manual_seed(config.seed)  # action sampling and minibatch order
        self.normalizer = Normalizer(
            tuple(observation_space.shape), config.num_envs, config.gamma,
            config.normalize_observations, config.normalize_rewards,
        )
        self.env = make_vector_env(config.env_id, config.num_envs, config.vector_mode)
        if self.engine is not None:
            self.collector = self.engine.collector(self.env, self.policy, self.normalizer, self.generator)
        else:
            self.collector = RolloutCollector(self.env, self.policy, self.normalizer, self.generator)
        self.updates = 0
        self.timesteps = 0
        self.collector.reset(seed=config.seed)

    def step(self) -> dict[str, float]:
        """Collect one rollout and make one update; returns the update's statistics."""
        config = self.config
        batch, last_observations = self.collector.collect(config.num_steps)
        self.timesteps += config.rollout_size
        # SB3's convention: schedules read the progress after the rollout that feeds this update
        progress_remaining = 1.0 - self.timesteps / config.total_timesteps
        learning_rate = scheduled(config.learning_rate, config.lr_schedule, progress_remaining)
        set_learning_rate(self.optimizer, learning_rate)
        options: dict[str, Any] = {}
        if isinstance(config, PPOConfig):
            options["clip_range"] = scheduled(config.clip_range, config.clip_range_schedule, progress_remaining)
            options["generator"] = self.generator
        if self.engine is not None:
            stats = self.engine.learn(self.policy, self.optimizer, batch, last_observations, config, **options)
        else:
            stats = learn(self.policy, self.optimizer, batch, last_observations, config, **options)
        self.updates += 1
        stats["optim/learning_rate"] = learning_rate
        return stats

    @property
    def done(self) -> bool:
        return self.timesteps >= self.config.total_timesteps

    def act(self, observations: np.ndarray, deterministic: bool = True, generator: torch.Generator | None = None) -> np.ndarray:
        """Actions for raw observations [N, obs], with the normaliser's statistics frozen."""
        normalized = self.normalizer.observation(np.asarray(observations, dtype=np.float32), update=False)
        with torch.inference_mode():
            actions = self.policy.act(torch.from_numpy(normalized), generator, deterministic).numpy()
        if self.policy.continuous:
            space = self.env.single_action_space
            actions = np.clip(actions, space.low, space.high)
        return actions

    def save(self, run_dir: str | Path, extra_state: dict[str, Any] | None = None) -> Path:
        from rlcode.configs import config_to_dict
        from rlcode.run.checkpoints import (
            Checkpoint,
            capture_rng_state,
            optimizer_to_checkpoint,
            save_checkpoint,
        )

        rng_json, rng_tensors = capture_rng_state()
        optimizer_tensors, optimizer_meta = optimizer_to_checkpoint(self.optimizer)
        state = {
            "algorithm": self.config.algorithm,
            "updates": self.updates,
            "timesteps": self.timesteps,
            "torch_threads": torch.get_num_threads(),
            "optimizer": optimizer_meta,
            "rng": rng_json,
            "normalizer": self.normalizer.state(),
            "collector": self.collector.state(),
            "env": snapshot_env(self.env),
            **(extra_state or {}),
        }
        tensors = {
            "model": dict(self.policy.state_dict()),
            "rng": {**rng_tensors, "sampler": self.generator.get_state()},
        }
        if optimizer_tensors:
            tensors["optimizer"] = optimizer_tensors
        return save_checkpoint(run_dir, Checkpoint(config=config_to_dict(self.config), tensors=tensors, state=state))

    @classmethod
    def load(cls, run_dir: str | Path) -> PolicyGradientRun:
        """Rebuild a run from its checkpoint: weights, optimizer, RNGs, normaliser, envs, counters."""
        from rlcode.configs import config_from_dict
        from rlcode.run.checkpoints import (
            CheckpointError,
            load_checkpoint,
            optimizer_from_checkpoint,
            restore_rng_state,
        )

        checkpoint = load_checkpoint(run_dir, framework="torch")
        algorithm = checkpoint.state.get("algorithm")
        if algorithm not in CONFIGS:
            raise CheckpointError(
                f"{str(run_dir)!r} holds a {algorithm!r} run, not a policy-gradient one ({sorted(CONFIGS)})."
            )
        config = config_from_dict(CONFIGS[algorithm], checkpoint.config, source=f"{run_dir}/config.json")
        run = cls(config)
        state = checkpoint.state
        torch.set_num_threads(int(state["torch_threads"]))
        try:
            run.policy.load_state_dict(checkpoint.tensors["model"])
        except RuntimeError as error:
            raise CheckpointError(f"the checkpoint's weights do not fit {config.env_id}'s spaces: {error}") from None
        optimizer_from_checkpoint(run.optimizer, checkpoint.tensors.get("optimizer", {}), state["optimizer"])
        restore_rng_state(state["rng"], checkpoint.tensors["rng"])
        run.generator.set_state(checkpoint.tensors["rng"]["sampler"])
        run.normalizer.load(state["normalizer"])
        if state["env"]:
            restore_env(run.env, state["env"])
            run.collector.load(state["collector"])
        else:  # async envs live in subprocesses and are not snapshotted: continue from fresh episodes
            warnings.warn(f"{str(run_dir)!r} was trained with async envs, whose state is not saved; the resumed "
                          "run starts new episodes, so it will not match an uninterrupted run bit for bit.",
                          RuntimeWarning, stacklevel=2)
        run.updates, run.timesteps = int(state["updates"]), int(state["timesteps"])
        return run

    def close(self) -> None:
        self.env.close()


def evaluate_policy(
    act: Any, env_id: str, episodes: int, seed: int, vector_mode: str = "auto"
) -> np.ndarray:
    """Returns of ``episodes`` episodes, one per env of a vector env: ``act(observations [N, obs])``.

    At most EVAL_BATCH envs exist at once; episode i is seeded ``seed + i`` whatever the batching,
    so up to EVAL_BATCH episodes (and all deterministic evaluations) give the same returns as one
    vector env of ``episodes`` envs.
    """
    batches = [
        _evaluate_batch(act, env_id, min(EVAL_BATCH, episodes - start), seed + start, vector_mode)
        for start in range(0, episodes, EVAL_BATCH)
    ]
    return np.concatenate(batches) if batches else np.zeros(0)


def _evaluate_batch(act: Any, env_id: str, episodes: int, seed: int, vector_mode: str) -> np.ndarray:
    env = make_vector_env(env_id, episodes, vector_mode)
    try:
        observations, _ = env.reset(seed=seed)
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            observations, rewards, terminated, truncated, _ = env.step(act(observations))
            returns += rewards * running
            running &= ~(terminated | truncated)
        return returns
    finally:
        env.close()


EVAL_BATCH = 1000  # envs of one evaluation vector env: one per episode would allocate gigabytes for 10**6

# With save_every=0, a checkpoint every this many seconds of training: a kill loses at most that much
# work. Measured (AMD EPYC, 2 shared cores): one save of a default PPO/A2C CartPole run takes 4.5 ms
# median, 73 ms worst of 30 (fsyncs), so ~0.02 % of training time at 30 s; a default 100k-step run
# (~4 s) saves only at its end, as before. Time rather than updates, because update cost varies 1000x.
SAVE_SECONDS = 30.0


def default_run_dir(config: PolicyGradientConfig) -> Path:
    """A new, empty ``runs/ALGO-ENV-seedN-TIMESTAMP-RANDOM``, created exclusively (unique per start)."""
    from rlcode.run.run_dirs import create_default_run_dir

    env = config.env_id.replace("/", "_").replace(":", "_")
    return create_default_run_dir(f"{config.algorithm}-{env}-seed{config.seed}")


def _save_due(config: PolicyGradientConfig, updates: int, since_save: float, save_seconds: float | None) -> bool:
    if config.save_every:
        return updates % config.save_every == 0
    return save_seconds is not None and since_save >= save_seconds


def _summarise(episodes: list[tuple[float, int]]) -> dict[str, float]:
    if not episodes:
        return {}
    returns, lengths = zip(*episodes)
    return {"rollout/episode_return": float(np.mean(returns)), "rollout/episode_length": float(np.mean(lengths))}


def train(
    config: PolicyGradientConfig | None,
    run_dir: str | Path | None = None,
    quiet: bool = False,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after_updates: int | None = None,
    save_seconds: float | None = SAVE_SECONDS,
) -> dict[str, Any]:
    """Train until total_timesteps, evaluate deterministically, save checkpoint and model card.

    ``run_dir`` must not hold another run (``rlcode.run.run_dirs``): ``resume=True`` continues the run in
    it (config None, or equal to the saved one), ``overwrite=True`` replaces rlcode's files of it.
    Checkpoints are saved every ``config.save_every`` updates, or with save_every=0 every
    ``save_seconds`` of training (None: only at the end), and at the end.
    ``stop_after_updates`` saves and returns early once that many updates are done (in total).
    """
    from rlcode.configs import config_to_dict
    from rlcode.run.metrics import MetricsLogger, output_names, truncate_metrics
    from rlcode.run.run_dirs import check_run_dir, claim_run_dir, mark_finished, mode_of

    mode = mode_of(resume, overwrite)
    names = ("checkpoint", "README.md", *output_names())
    if run_dir is not None:
        check_run_dir(run_dir, names, mode)  # before any work: nothing is built for a refused directory
    if resume:
        if run_dir is None:
            raise ValueError("resume=True needs the run_dir of the run to continue.")
        run = PolicyGradientRun.load(run_dir)
        if config is not None and config != run.config:
            raise ValueError(f"the config given differs from the one saved in {run_dir}; pass config=None to resume.")
    elif config is None:
        raise ValueError("train() needs a config (or resume=True with a run_dir).")
    else:
        run = PolicyGradientRun(config)
    config = run.config
    run_dir = claim_run_dir(run_dir if run_dir is not None else default_run_dir(config), names, mode,
                            config.algorithm, config.env_id)
    if resume:
        truncate_metrics(run_dir, run.timesteps)  # records after the checkpoint are logged again
    log_every = max(1, 1024 // config.rollout_size)  # about one record per thousand env steps
    next_eval = (run.timesteps // config.eval_every + 1) * config.eval_every if config.eval_every else None
    start = last_save = time.perf_counter()
    evaluations: list[dict[str, float]] = []
    with MetricsLogger(run_dir, total_steps=config.total_timesteps, quiet=quiet, config=config_to_dict(config),
                       description=config.algorithm) as logger:
        while not run.done and (stop_after_updates is None or run.updates < stop_after_updates):
            stats = run.step()
            if run.updates % log_every == 0 or run.done:
                logger.log(run.timesteps, stats | _summarise(run.collector.drain_episodes()))
            if next_eval is not None and run.timesteps >= next_eval and not run.done:
                next_eval += config.eval_every
                returns = evaluate_policy(run.act, config.env_id, config.eval_episodes, config.seed + 1000)
                evaluations.append({"step": run.timesteps, "mean_return": float(returns.mean())})
                logger.log(run.timesteps, {"eval/mean_return": float(returns.mean()),
                                           "eval/std_return": float(returns.std())}, force_print=True)
            if not run.done and _save_due(config, run.updates, time.perf_counter() - last_save, save_seconds):
                run.save(run_dir)  # reads the run's state only, so saving never changes the training
                last_save = time.perf_counter()
        train_seconds = time.perf_counter() - start
        returns = evaluate_policy(run.act, config.env_id, config.eval_episodes, config.seed + 1000)
        logger.log(run.timesteps, {"eval/mean_return": float(returns.mean()),
                                   "eval/std_return": float(returns.std())}, force_print=not quiet)
    result: dict[str, Any] = {
        "algorithm": config.algorithm,
        "env": config.env_id,
        "timesteps": run.timesteps,
        "updates": run.updates,
        "train_seconds": train_seconds,
        "steps_per_second": run.timesteps / max(train_seconds, 1e-9),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "eval_episodes": config.eval_episodes,
        "evaluations": evaluations,
        "run_dir": str(run_dir),
    }
    run.save(run_dir, extra_state={"result": {k: v for k, v in result.items() if k not in ("run_dir", "evaluations")}})
    run.close()
    if run.done:
        from rlcode.run.model_card import write_run_card

        write_run_card(run_dir, config.algorithm, config.env_id, config_to_dict(config), result)
        mark_finished(run_dir)
    if not quiet:
        print(f"{config.algorithm} on {config.env_id}: {run.timesteps:,} steps in {train_seconds:.1f}s "
              f"({result['steps_per_second']:,.0f} steps/s); deterministic return "
              f"{result['mean_return']:.1f} ± {result['std_return']:.1f} over {config.eval_episodes} episodes; "
              f"saved to {run_dir}")
    return result


def evaluate(
    run_dir: str | Path,
    episodes: int | None = None,
    deterministic: bool = True,
    seed: int | None = None,
    video: str | Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run a saved agent for ``episodes`` episodes (argmax/mean actions, or sampled ones)."""
    from rlcode.configs import check_episodes

    if episodes is not None:  # refused before the checkpoint is read
        check_episodes(episodes, "episodes")
    with warnings.catch_warnings():  # the training envs' state does not matter here
        warnings.simplefilter("ignore", RuntimeWarning)
        run = PolicyGradientRun.load(run_dir)
    config = run.config
    run.close()
    episodes = episodes or config.eval_episodes
    seed = config.seed + 2000 if seed is None else seed
    generator = torch.Generator().manual_seed(seed)
    returns = evaluate_policy(lambda obs: run.act(obs, deterministic, generator), config.env_id, episodes, seed)
    result: dict[str, Any] = {
        "algorithm": config.algorithm,
        "env": config.env_id,
        "episodes": episodes,
        "deterministic": deterministic,
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "min_return": float(returns.min()),
        "max_return": float(returns.max()),
    }
    if video is not None:
        from rlcode.env_ids import make_env
        from rlcode.run.video import record_video

        video_env = make_env(config.env_id, render_mode="rgb_array")
        single = lambda observation: run.act(observation[None], deterministic, generator)[0]  # noqa: E731
        result["video"] = str(record_video(video_env, single, video, episodes=1, seed=seed))
        video_env.close()
    if not quiet:
        mode = "deterministic" if deterministic else "stochastic"
        print(f"{config.algorithm} on {config.env_id}: {mode} return {result['mean_return']:.1f} ± "
              f"{result['std_return']:.1f} (min {result['min_return']:.1f}, max {result['max_return']:.1f}) "
              f"over {episodes} episodes")
    return result
