"""``PPOConfig.log_with`` (and ``GRPOConfig.report_to``) onto rlcode's ``MetricsLogger``, and what
``PPOTrainer.log_stats`` writes.

Where: ``<project_kwargs["logging_dir"]>/<tracker_project_name>`` (accelerate's TensorBoard layout),
else a new ``runs/ppo-<exp_name>-seed<seed>-<time>-<random>``. "tensorboard" writes event files
there, "jsonl" only ``metrics.jsonl`` (every backend writes that one, and ``samples.jsonl``), and
"wandb" opens a run in project ``tracker_project_name`` with ``tracker_kwargs["wandb"]``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlcode.rlhf.config import PPOConfig
from rlcode.run.metrics import MetricsLogger

SAMPLES_TABLE = "samples"  # TRL names its W&B table "game_log"; here it is a file name as well


def log_directory(config: PPOConfig) -> Path:
    """The run directory the config's logging options choose (created when it is a default one)."""
    if config.logging_dir is not None:
        return Path(config.logging_dir) / config.tracker_project_name
    from rlcode.run.run_dirs import create_default_run_dir

    name = config.exp_name.replace("/", "_") or "ppo"
    return create_default_run_dir(f"ppo-{name}-seed{config.seed}")


def make_logger(config: PPOConfig) -> MetricsLogger | None:
    """The logger for ``log_with``; None when it is None (TRL logs nowhere then)."""
    if config.log_with is None:
        return None
    return open_logger(config.log_with, log_directory(config), config.tracker_project_name,
                       {"trl_ppo_trainer_config": config.to_dict()}, config.tracker_kwargs.get("wandb"))


def open_logger(backend: str, directory: Path, project: str, run_config: dict[str, Any],
                wandb_kwargs: dict[str, Any] | None) -> MetricsLogger:
    """A ``MetricsLogger`` in ``directory`` for "jsonl" (metrics.jsonl only), "tensorboard" (and event
    files) or "wandb" (and a run in ``project`` whose config is ``run_config``)."""
    wandb = backend == "wandb"
    return MetricsLogger(
        directory, quiet=True, progress_bar=False, tensorboard=backend == "tensorboard",
        wandb_project=project if wandb else None, config=run_config if wandb else None,
        wandb_kwargs=wandb_kwargs if wandb else None,
    )


def reward_tensor(rewards: Any, device: torch.device) -> torch.Tensor:
    """A list of floats or scalar tensors (or a tensor) as one flat float tensor."""
    if isinstance(rewards, torch.Tensor):
        return rewards.detach().to(device).float().flatten()
    return torch.stack([torch.as_tensor(r, dtype=torch.float32).detach().flatten() for r in rewards]).to(device).flatten()


def split_stats(logs: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Scalars (numbers, one-element arrays and tensors) apart from distributions (longer arrays)."""
    scalars: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, value in logs.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().float().cpu().numpy()
        if isinstance(value, np.ndarray):
            if value.size == 1:
                scalars[key] = float(value.reshape(()))
            elif value.size > 1:
                arrays[key] = value.astype(np.float64).ravel()
        elif isinstance(value, numbers.Real):
            scalars[key] = float(value)
    return scalars, arrays


def table_cell(value: Any) -> Any:
    """A batch column's entry as something a table shows: tensors become lists (or numbers)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def write_logs(logger: MetricsLogger, step: int, logs: Mapping[str, Any],
               table: tuple[list[str], list[list[Any]]] | None) -> None:
    """Scalars to every backend, distributions as histograms, the samples as a table."""
    scalars, arrays = split_stats(logs)
    logger.log(step, scalars)
    if arrays:
        logger.log_histograms(step, arrays)
    if table is not None:
        logger.log_table(step, SAMPLES_TABLE, *table)


def log_stats(logger: MetricsLogger | None, accelerator: Any, step: int, stats: Mapping[str, Any],
              batch: Mapping[str, Any], rewards: Any, columns_to_log: Iterable[str]) -> None:
    """``PPOTrainer.log_stats``: TRL's checks of the batch's columns, rewards gathered from every process,
    then stats + env/reward_mean, env/reward_std, env/reward_dist and the samples table to ``logger``."""
    columns = list(columns_to_log)
    rewards_all = accelerator.gather(reward_tensor(rewards, accelerator.device)).float()
    missing = [c for c in columns if c not in batch]
    table = None
    if "query" not in batch and "response" not in batch:
        warnings.warn("The game logs will not be logged because the batch does not contain the keys 'query' "
                      "and 'response' (TRL's warning).", UserWarning, stacklevel=3)
    elif missing:
        raise ValueError(f"log_stats: columns_to_log {missing} are not in the batch (keys: {list(batch)}).")
    else:
        cells = [accelerator.gather_object([table_cell(v) for v in batch[c]]) for c in columns]
        table = ([*columns, "reward"], [[*row, r] for row, r in zip(zip(*cells), rewards_all.tolist())])
    if logger is None:
        return
    logs = dict(stats)
    logs["env/reward_mean"] = float(rewards_all.mean())
    logs["env/reward_std"] = float(rewards_all.std()) if rewards_all.numel() > 1 else float("nan")
    logs["env/reward_dist"] = rewards_all.cpu().numpy()
    write_logs(logger, step, logs, table)
