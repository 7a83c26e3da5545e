"""The registry that maps an algorithm name to its config class, ``train`` and ``evaluate``.

Entries are import paths, resolved on use, so that ``rlcode --help`` and the tabular tier never
import torch or transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlcode.configs import ConfigReader


@dataclass(frozen=True)
class Algorithm:
    name: str
    config: str  # "module:ConfigClass"
    train: str  # "module:function", train(config, run_dir=None, quiet=False) -> dict
    evaluate: str  # "module:function", evaluate(run_dir, episodes, deterministic, seed, video, quiet) -> dict
    summary: str
    # "module:NAME" of a {suffix: reader} mapping for config files beyond TOML and JSON (rl-zoo YAML for
    # the policy-gradient tier); ``rlcode.configs.load_config_file`` takes it, so configs imports no tier.
    config_readers: str = ""
    # "module:function" drawing a tier's own figures of one run for ``rlcode plot``:
    # figures(run: rlcode.run.plots.Run, out_dir: Path) -> list[Path]; "" for none.
    figures: str = ""

    def load(self, attribute: str) -> Any:
        module_name, _, name = getattr(self, attribute).partition(":")
        return getattr(importlib.import_module(module_name), name)

    def readers(self) -> Mapping[str, ConfigReader]:
        """The extra config-file readers of this algorithm's tier, by suffix (none for most tiers)."""
        return self.load("config_readers") if self.config_readers else {}


_TABULAR = "rlcode.tabular"
_FIGURES = f"{_TABULAR}.figures:run_figures"
_PG = "rlcode.policy_gradient"
_ZOO = f"{_PG}.zoo:CONFIG_READERS"
ALGORITHMS: dict[str, Algorithm] = {
    algo.name: algo
    for algo in [
        Algorithm("qlearning", f"{_TABULAR}.config:QLearningConfig", f"{_TABULAR}.train:train",
                  f"{_TABULAR}.train:evaluate", "tabular Q-learning (off-policy TD control)", figures=_FIGURES),
        Algorithm("sarsa", f"{_TABULAR}.config:SarsaConfig", f"{_TABULAR}.train:train",
                  f"{_TABULAR}.train:evaluate", "tabular SARSA (on-policy TD control)", figures=_FIGURES),
        Algorithm("expected-sarsa", f"{_TABULAR}.config:ExpectedSarsaConfig", f"{_TABULAR}.train:train",
                  f"{_TABULAR}.train:evaluate", "tabular expected SARSA", figures=_FIGURES),
        Algorithm("reinforce", f"{_PG}.config:ReinforceConfig", f"{_PG}.train:train",
                  f"{_PG}.train:evaluate", "REINFORCE with optional learned baseline", _ZOO),
        Algorithm("a2c", f"{_PG}.config:A2CConfig", f"{_PG}.train:train",
                  f"{_PG}.train:evaluate", "advantage actor-critic with n-step returns", _ZOO),
        Algorithm("ppo", f"{_PG}.config:PPOConfig", f"{_PG}.train:train",
                  f"{_PG}.train:evaluate", "proximal policy optimisation (clipped surrogate, GAE)", _ZOO),
    ]
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}.")
    return ALGORITHMS[name]


def config_class(name: str) -> type:
    return get_algorithm(name).load("config")


def train(config: Any, run_dir: Any = None, quiet: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train the algorithm that ``config`` belongs to; the one entry point sweeps map over.
    ``overwrite`` replaces an earlier run's own files in ``run_dir`` (``rlcode.run.run_dirs``)."""
    for algo in ALGORITHMS.values():
        module_name, _, class_name = algo.config.partition(":")
        if type(config).__name__ == class_name and type(config).__module__ == module_name:
            return algo.load("train")(config, run_dir=run_dir, quiet=quiet, overwrite=overwrite)
    raise TypeError(f"{type(config).__name__} is not the config of any registered algorithm.")
