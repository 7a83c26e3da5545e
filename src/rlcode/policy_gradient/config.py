"""Configs of REINFORCE, A2C and PPO: one frozen dataclass each over a shared base.

Defaults solve CartPole-v1 (PPO's are the rl-baselines3-zoo CartPole-v1 hyperparameters). Checks that
need the environment's spaces (a continuous-only option on a discrete env) live in
``envs.check_against_spaces`` and run in ``train()`` after the spaces are read and before any env is built.
This module imports neither torch nor gymnasium at module level.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal

from rlcode.configs import MAX_EPISODES, ConfigError, check_choice, check_range, doc_field
from rlcode.errors import short_repr

# Weights, gradients and Adam's two moments: four float32 copies of every parameter.
BYTES_PER_PARAMETER = 4 * 4


@dataclass(frozen=True)
class PolicyGradientConfig:
    """Fields every policy-gradient algorithm shares."""

    env_id: str = doc_field("CartPole-v1", "gymnasium environment id (Box observations; Discrete or Box actions)")
    num_envs: int = doc_field(8, "parallel environments in the vector env")
    num_steps: int = doc_field(32, "steps per environment in each rollout (rollout = num_envs*num_steps)")
    total_timesteps: int = doc_field(100_000, "environment steps to train for (all envs together)")
    learning_rate: float = doc_field(1e-3, "optimizer step size at the start of training")
    lr_schedule: Literal["constant", "linear"] = doc_field("linear", "learning rate: constant, or linear to 0")
    optimizer: Literal["adam", "rmsprop"] = doc_field("adam", "adam, or rmsprop (alpha=0.99) as SB3's A2C uses")
    optimizer_eps: float = doc_field(1e-5, "epsilon of Adam/RMSprop (SB3 uses 1e-5)")
    gamma: float = doc_field(0.98, "discount factor")
    entropy_coef: float = doc_field(0.0, "weight of the entropy bonus")
    value_coef: float = doc_field(0.5, "weight of the critic's mean squared error E[(V-R)^2] (SB3's vf_coef)")
    max_grad_norm: float | None = doc_field(0.5, "clip the global gradient norm to this (None = no clipping)")
    normalize_advantages: bool = doc_field(True, "whiten advantages per minibatch")
    normalize_observations: bool = doc_field(False, "running mean/std observation normaliser (saved in checkpoints)")
    normalize_rewards: bool = doc_field(False, "scale rewards by the running std of the discounted return")
    hidden_sizes: tuple[int, ...] = doc_field((64, 64), "hidden layer widths of the actor and critic MLPs")
    activation: Literal["tanh", "relu"] = doc_field("tanh", "hidden activation")
    shared_trunk: bool = doc_field(False, "actor and critic share the hidden layers (two heads on one trunk)")
    orthogonal_init: bool = doc_field(True, "orthogonal init: gain sqrt(2) hidden, 0.01 policy head, 1 value head")
    log_std_init: float | None = doc_field(None, "initial log std of the Gaussian policy (Box actions only; None = 0)")
    vector_mode: Literal["auto", "sync", "async"] = doc_field(
        "auto", "auto: the env's own numpy-vectorised implementation if it registers one, else sync; "
        "sync: SyncVectorEnv; async: AsyncVectorEnv subprocesses"
    )
    seed: int = doc_field(0, "seeds python, numpy, torch, the action sampler and the environments")
    eval_episodes: int = doc_field(10, "episodes of the final deterministic evaluation")
    eval_every: int = doc_field(0, "evaluate every this many env steps during training (0 = only at the end)")
    save_every: int = doc_field(0, "save a checkpoint every this many updates (0 = every 30 s of training, and at the end)")
    torch_threads: int = doc_field(1, "torch intra-op threads (1 is fastest for small MLPs; recorded in checkpoints)")

    algorithm = "policy_gradient"

    @property
    def rollout_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Updates until total_timesteps is reached (the last rollout may overshoot, as in SB3)."""
        return math.ceil(self.total_timesteps / self.rollout_size)

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ConfigError(f"{name}.env_id={self.env_id!r} is invalid; pass a gymnasium id such as 'CartPole-v1'.")
        for field_name in ("num_envs", "num_steps", "total_timesteps", "eval_episodes", "torch_threads"):
            _check_int(self, field_name, low=1)
        for field_name in ("eval_every", "save_every"):
            _check_int(self, field_name, low=0)
        check_range(self, "learning_rate", 0.0, None, low_open=True)
        check_range(self, "optimizer_eps", 0.0, None, low_open=True)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "entropy_coef", 0.0, None)
        check_range(self, "value_coef", 0.0, None)
        if self.max_grad_norm is not None:
            check_range(self, "max_grad_norm", 0.0, None, low_open=True, infinite_fix=NO_LIMIT_FIX)
        check_choice(self, "lr_schedule", ["constant", "linear"])
        check_choice(self, "optimizer", ["adam", "rmsprop"])
        check_choice(self, "activation", ["tanh", "relu"])
        check_choice(self, "vector_mode", ["auto", "sync", "async"])
        sizes = tuple(self.hidden_sizes)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ConfigError(
                f"{name}.hidden_sizes={self.hidden_sizes!r} is invalid: allowed a non-empty list of positive "
                "integers; pass e.g. --hidden-sizes 64,64."
            )
        object.__setattr__(self, "hidden_sizes", sizes)
        _check_network_memory(self)
        if self.eval_episodes > MAX_EPISODES:
            raise ConfigError(
                f"{name}.eval_episodes={self.eval_episodes} is invalid: allowed at most {MAX_EPISODES}; "
                "lower eval_episodes (the standard error shrinks only with its square root)."
            )
        if self.total_timesteps < self.rollout_size:
            raise ConfigError(
                f"{name}.total_timesteps={self.total_timesteps} is smaller than one rollout "
                f"(num_envs*num_steps = {self.rollout_size}); raise total_timesteps or lower num_steps."
            )
        if self.log_std_init is not None:
            check_range(self, "log_std_init", -20.0, 2.0)


NO_LIMIT_FIX = "pass none to switch it off (inf means the same, spelled one way only)"


def _available_memory() -> int:
    """Physical memory in bytes (a large fallback where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 40


def _check_network_memory(config: PolicyGradientConfig) -> None:
    """Refuse hidden sizes whose weights cannot fit in memory, before torch tries to allocate them.

    Counts only the weights between hidden layers (and one input and output per layer's end), a
    lower bound that needs no env; the actor and the critic each hold a copy unless they share one.
    """
    sizes = config.hidden_sizes
    per_network = sum(a * b + b for a, b in zip(sizes, sizes[1:])) + 2 * sizes[0] + 2 * sizes[-1]
    networks = 1 if config.shared_trunk else 2
    needed = per_network * networks * BYTES_PER_PARAMETER
    available = _available_memory()
    if needed > available // 2:
        raise ConfigError(
            f"{type(config).__name__}.hidden_sizes={short_repr(sizes)} needs at least {needed / 2**30:.1f} GiB "
            f"for weights, gradients and optimizer state, more than half of this machine's "
            f"{available / 2**30:.1f} GiB; pass smaller widths such as --hidden-sizes 64,64."
        )


def _check_int(config: Any, field_name: str, low: int) -> None:
    value = getattr(config, field_name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(
            f"{type(config).__name__}.{field_name}={value!r} is invalid: allowed an integer >= {low}; "
            f"set {field_name} to such an integer."
        )


@dataclass(frozen=True)
class ReinforceConfig(PolicyGradientConfig):
    """REINFORCE (Williams 1992): Monte-Carlo returns, optional learned baseline, entropy bonus."""

    num_steps: int = doc_field(200, "steps per environment per rollout; steps of an episode unfinished at the end are dropped")
    total_timesteps: int = doc_field(100_000, "environment steps to train for (all envs together)")
    learning_rate: float = doc_field(5e-3, "optimizer step size at the start of training")
    lr_schedule: Literal["constant", "linear"] = doc_field("constant", "learning rate: constant, or linear to 0")
    gamma: float = doc_field(0.99, "discount factor")
    use_baseline: bool = doc_field(True, "subtract a learned state-value baseline V(s) from the returns")
    normalize_advantages: bool = doc_field(True, "whiten (return - baseline) over the rollout")

    algorithm = "reinforce"


@dataclass(frozen=True)
class A2CConfig(PolicyGradientConfig):
    """A2C (Mnih et al. 2016, synchronous): n-step returns, a critic, one gradient step per rollout.

    Defaults are SB3's A2C defaults, which rl-baselines3-zoo uses for CartPole-v1 (with 500k steps).
    """

    num_steps: int = doc_field(5, "steps per environment per rollout (the n of n-step returns)")
    total_timesteps: int = doc_field(500_000, "environment steps to train for (all envs together)")
    learning_rate: float = doc_field(7e-4, "optimizer step size at the start of training")
    lr_schedule: Literal["constant", "linear"] = doc_field("constant", "learning rate: constant, or linear to 0")
    optimizer: Literal["adam", "rmsprop"] = doc_field("rmsprop", "rmsprop (alpha=0.99, as SB3's A2C) or adam")
    gamma: float = doc_field(0.99, "discount factor")
    gae_lambda: float = doc_field(1.0, "GAE lambda; 1.0 gives plain n-step returns")
    normalize_advantages: bool = doc_field(False, "whiten advantages over the rollout")
    fused_update: bool = doc_field(
        True, "values, advantages and the gradient step in one numpy pass with a hand-written backward on "
        "flat buffers and a numpy actor in the rollout (same maths, ~5x faster on small MLPs); false: the "
        "reference path (autograd, torch.optim)"
    )

    algorithm = "a2c"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "gae_lambda", 0.0, 1.0)


@dataclass(frozen=True)
class PPOConfig(PolicyGradientConfig):
    """PPO (Schulman et al. 2017) with GAE; defaults are rl-baselines3-zoo's CartPole-v1 hyperparameters."""

    gae_lambda: float = doc_field(0.8, "GAE lambda (Schulman et al. 2016)")
    num_epochs: int = doc_field(20, "passes over each rollout")
    minibatch_size: int = doc_field(256, "rows per gradient step; must divide num_envs*num_steps")
    clip_range: float = doc_field(0.2, "policy ratio clip epsilon at the start of training")
    clip_range_schedule: Literal["constant", "linear"] = doc_field("linear", "clip range: constant, or linear to 0")
    value_clip_range: float | None = doc_field(None, "clip value updates around the old values (None = off)")
    target_kl: float | None = doc_field(None, "stop the epochs once approx KL exceeds 1.5*target_kl (None = off)")
    fused_update: bool = doc_field(
        True, "gradient steps with a hand-written backward on flat buffers (same maths, ~3x faster on "
        "small MLPs) and a numpy actor in the rollout; false: the reference path (autograd, torch.optim)"
    )

    algorithm = "ppo"

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        check_range(self, "gae_lambda", 0.0, 1.0)
        _check_int(self, "num_epochs", low=1)
        _check_int(self, "minibatch_size", low=2)
        check_range(self, "clip_range", 0.0, None, low_open=True)
        check_choice(self, "clip_range_schedule", ["constant", "linear"])
        if self.value_clip_range is not None:
            check_range(self, "value_clip_range", 0.0, None, low_open=True, infinite_fix=NO_LIMIT_FIX)
        if self.target_kl is not None:
            check_range(self, "target_kl", 0.0, None, low_open=True, infinite_fix=NO_LIMIT_FIX)
        if self.rollout_size % self.minibatch_size != 0:
            raise ConfigError(
                f"{name}.minibatch_size={self.minibatch_size} does not divide the rollout size "
                f"num_envs*num_steps = {self.num_envs}*{self.num_steps} = {self.rollout_size}; "
                "choose a minibatch_size that divides it, or change num_envs/num_steps."
            )


# rl-baselines3-zoo hyperparameter name -> field name. A zoo value "lin_X" for learning_rate or
# clip_range means X with lr_schedule / clip_range_schedule = "linear"; policy_kwargs entries are
# keyed "policy_kwargs.<name>"; "normalize: true" sets both normalize_observations and
# normalize_rewards (VecNormalize's default), a dict value sets them from norm_obs / norm_reward.
ZOO_KEYS: dict[str, str | tuple[str, ...]] = {
    "n_envs": "num_envs",
    "n_steps": "num_steps",
    "batch_size": "minibatch_size",
    "n_epochs": "num_epochs",
    "gae_lambda": "gae_lambda",
    "gamma": "gamma",
    "ent_coef": "entropy_coef",
    "vf_coef": "value_coef",
    "learning_rate": "learning_rate",
    "clip_range": "clip_range",
    "clip_range_vf": "value_clip_range",
    "max_grad_norm": "max_grad_norm",
    "n_timesteps": "total_timesteps",
    "normalize": ("normalize_observations", "normalize_rewards"),
    "normalize_advantage": "normalize_advantages",
    "target_kl": "target_kl",
    "seed": "seed",
    "policy_kwargs.net_arch": "hidden_sizes",
    "policy_kwargs.activation_fn": "activation",
    "policy_kwargs.ortho_init": "orthogonal_init",
    "policy_kwargs.log_std_init": "log_std_init",
    "policy_kwargs.share_features_extractor": "shared_trunk",
    "use_rms_prop": "optimizer",
    "rms_prop_eps": "optimizer_eps",
}
# How zoo values translate where the name map alone is not enough.
ZOO_VALUES: dict[str, dict[Any, Any]] = {
    "use_rms_prop": {True: "rmsprop", False: "adam"},
    "policy_kwargs.activation_fn": {"nn.Tanh": "tanh", "nn.ReLU": "relu", "th.nn.Tanh": "tanh", "th.nn.ReLU": "relu"},
}
# Zoo keys that change nothing here (the policy is always an MLP); a loader may skip them silently.
ZOO_IGNORED: frozenset[str] = frozenset({"policy", "env_wrapper", "frame_stack", "callback", "device"})
