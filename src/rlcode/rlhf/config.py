"""PPOConfig: every field of TRL 0.11.4's ``PPOConfig`` with its default, validated up front.

Field names, defaults and derived values follow trl/trainer/ppo_config.py, so a TRL script's
``PPOConfig(...)`` line works unchanged. Unlike TRL's, the dataclass is frozen: every check below
holds for the object's whole life (a field changed after construction would skip them); derive a
changed copy with ``dataclasses.replace(config, field=value)``. Each field's type is checked before
anything else, and TRL fields that do nothing in rlcode are named in one warning when set.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import types
import typing
import warnings
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

from rlcode.configs import ConfigError, check_choice, check_range, doc_field
from rlcode.errors import short_repr

KLPenalty = Literal["kl", "abs", "mse", "full"]
LogWith = Literal["wandb", "tensorboard", "jsonl"]

# TRL fields accepted for compatibility that change nothing in rlcode (named in one warning when set).
NO_EFFECT = ("accelerator_kwargs", "push_to_hub_if_best_kwargs", "compare_steps", "optimize_cuda_cache",
             "optimize_device_cache", "dataset_num_proc", "is_peft_model")
# project_kwargs keys that choose the logging directory; others are reported as without effect.
PROJECT_KEYS = ("logging_dir", "project_dir")
# Fields TRL overwrites after construction; here they are recomputed in __post_init__, silently as in TRL.
DERIVED = ("backward_batch_size", "world_size", "global_backward_batch_size", "global_batch_size")


def _script_name() -> str:
    """TRL's default experiment name: the running script's file name without ``.py``."""
    return os.path.basename(sys.argv[0]).removesuffix(".py")


def _launched_world_size() -> int:
    """Processes in this run: the process group's size, else torchrun's WORLD_SIZE, else 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of ``PPOTrainer``; names, defaults and derived values are TRL 0.11.4's.

    ``batch_size`` and ``mini_batch_size`` are global (unlike TRL's per-process sizes): under torchrun
    each of N processes passes ``batch_size / N`` triples to ``step()``, and the update equals the
    one-process update.
    """

    # tracking (TRL: "used only for tracking purposes"; here they go to the W&B run's config)
    exp_name: str = field(default_factory=_script_name, metadata={"help": "experiment name (default: the script's)"})
    seed: int = doc_field(0, "seeds python, numpy (minibatch order) and torch at construction")
    log_with: LogWith | None = doc_field(None, "where log_stats writes: tensorboard, wandb, jsonl, or None (nowhere)")
    task_name: str | None = doc_field(None, "task name, for tracking only")
    model_name: str = doc_field("gpt2", "model name, for tracking only")
    query_dataset: str = doc_field("stanfordnlp/imdb", "query dataset name, for tracking only")
    reward_model: str = doc_field("sentiment-analysis:lvwerra/distilbert-imdb", "reward model name, for tracking only")
    remove_unused_columns: bool = doc_field(True, "drop datasets.Dataset columns the model's forward does not take")
    tracker_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "tracker options by backend; tracker_kwargs['wandb'] goes to wandb.init"})
    accelerator_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "no effect (no Accelerator)"})
    project_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "logging_dir (or project_dir): logs go to <logging_dir>/<tracker_project_name>"})
    tracker_project_name: str = doc_field("trl", "W&B project, and the log directory's last part")
    push_to_hub_if_best_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "no effect"})
    steps: int = doc_field(20000, "number of training steps (for total_ppo_epochs; rlcode does not stop on it)")
    # optimisation
    learning_rate: float = doc_field(1.41e-5, "Adam learning rate (when no optimizer is given)")
    adap_kl_ctrl: bool = doc_field(True, "adaptive KL coefficient (Ziegler et al. 2019) instead of a fixed one")
    init_kl_coef: float = doc_field(0.2, "initial KL coefficient beta")
    kl_penalty: KLPenalty = doc_field("kl", "per-token KL estimate: kl (logp-ref), abs, mse (0.5 d^2) or full")
    target: float = doc_field(6.0, "target KL of the adaptive controller")
    horizon: float = doc_field(10000.0, "horizon of the adaptive controller")
    gamma: float = doc_field(1.0, "discount over response tokens")
    lam: float = doc_field(0.95, "GAE lambda")
    cliprange: float = doc_field(0.2, "policy ratio clip range")
    cliprange_value: float = doc_field(0.2, "value clip range around the old values")
    vf_coef: float = doc_field(0.1, "value loss coefficient")
    batch_size: int = doc_field(128, "(query, response, score) triples per step() over all processes")
    forward_batch_size: int | None = doc_field(None, "deprecated (TRL): sets mini_batch_size")
    mini_batch_size: int = doc_field(128, "rows per PPO minibatch (one forward/backward)")
    gradient_accumulation_steps: int = doc_field(1, "minibatches whose gradients add up to one optimizer step")
    world_size: int | None = doc_field(None, "derived: processes in the run")
    ppo_epochs: int = doc_field(4, "passes over the batch per step()")
    max_grad_norm: float | None = doc_field(None, "clip the gradient norm at every optimizer step")
    optimize_cuda_cache: bool | None = doc_field(None, "no effect (TRL: deprecated name of optimize_device_cache)")
    optimize_device_cache: bool = doc_field(False, "no effect (TRL: empty the device cache around each step)")
    early_stopping: bool = doc_field(False, "stop the epochs when policy KL > 1.5 * target_kl")
    target_kl: float = doc_field(1.0, "KL bound for early_stopping")
    compare_steps: int = doc_field(1, "no effect (TRL: how often push_to_hub_if_best compares rewards)")
    ratio_threshold: float = doc_field(10.0, "zero a minibatch's loss when its mean ratio exceeds this")
    use_score_scaling: bool = doc_field(False, "divide scores by their running std")
    use_score_norm: bool = doc_field(False, "with use_score_scaling, also subtract the running mean")
    score_clip: float | None = doc_field(None, "clip (scaled) scores to [-score_clip, score_clip]")
    whiten_rewards: bool = doc_field(False, "whiten per-token rewards (mean kept) before GAE")
    gradient_checkpointing: bool = doc_field(False, "call model.gradient_checkpointing_enable() at construction")
    is_encoder_decoder: bool | None = doc_field(None, "must not be True: rlcode trains decoder-only models")
    is_peft_model: bool | None = doc_field(None, "no effect: the trainer reads model.is_peft_model")
    backward_batch_size: int | None = doc_field(None, "derived: mini_batch_size * gradient_accumulation_steps")
    global_backward_batch_size: int | None = doc_field(None, "derived: equals backward_batch_size (sizes are global)")
    global_batch_size: int | None = doc_field(None, "derived: equals batch_size (sizes are global)")
    dataset_num_proc: int | None = doc_field(None, "no effect")
    # rlcode's own
    fused_activations: bool = doc_field(
        True, "step() runs the model's Python tanh-GELU (GPT-2's gelu_new) as one fused kernel (equal to float rounding)"
    )
    onednn_linear: bool = doc_field(
        True, "step() and generate() run the model's linear layers through oneDNN's float32 matmul on CPU "
        "(2-3x MKL's speed on AMD Zen 5; equal to float rounding; see rlcode.rlhf.fast.onednn)"
    )
    cpu_heap_cache: bool = doc_field(
        False, "opt-in speed setting: on a CPU under glibc, keep freed memory in the heap so that each minibatch's "
        "large temporaries do not page-fault afresh. It sets glibc's malloc thresholds (mallopt) for the whole "
        "process, for good; see rlcode.rlhf.fast.allocator"
    )
    no_grad_batch_size: int | None = doc_field(
        None, "rows per no-grad forward (None: epoch 0's minibatches, so the ratios before the first optimizer "
        "step are exactly 1 on any CPU; a number: plain chunks of that many rows, ratios 1 to float rounding)"
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.is_encoder_decoder:
            raise ConfigError(
                "PPOConfig.is_encoder_decoder=True is not supported: rlcode's PPOTrainer trains decoder-only "
                "(causal) language models; use a causal LM (AutoModelForCausalLMWithValueHead)."
            )
        if self.forward_batch_size is not None:
            warnings.warn(
                "PPOConfig.forward_batch_size is deprecated (as in TRL 0.11): it sets mini_batch_size, which is both "
                "the forward and the PPO minibatch size; pass mini_batch_size instead (rlcode's own no-grad forward "
                "size is no_grad_batch_size).", FutureWarning, stacklevel=3)
            object.__setattr__(self, "mini_batch_size", self.forward_batch_size)
        self._check_values()
        backward = self.mini_batch_size * self.gradient_accumulation_steps
        for name, value in (("backward_batch_size", backward), ("world_size", _launched_world_size()),
                            ("global_backward_batch_size", backward), ("global_batch_size", self.batch_size)):
            object.__setattr__(self, name, value)
        if self.batch_size % backward:
            raise ConfigError(
                f"PPOConfig.batch_size={self.batch_size} must be a multiple of mini_batch_size * "
                f"gradient_accumulation_steps = {self.mini_batch_size} * {self.gradient_accumulation_steps} = "
                f"{backward}; change batch_size, mini_batch_size or gradient_accumulation_steps."
            )
        if self.log_with == "wandb":  # TRL also refuses at construction
            from rlcode.extras import require

            require("wandb", "wandb", "PPOConfig(log_with='wandb')")
        self._warn_no_effect()

    def _check_values(self) -> None:
        for name in ("batch_size", "mini_batch_size", "gradient_accumulation_steps", "ppo_epochs", "steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PPOConfig.{name}={getattr(self, name)!r} is invalid: allowed integers >= 1; "
                                  f"set {name} >= 1.")
        if self.no_grad_batch_size is not None and self.no_grad_batch_size < 1:
            raise ConfigError(
                f"PPOConfig.no_grad_batch_size={self.no_grad_batch_size!r} is invalid: allowed None or an "
                "integer >= 1; set it to None to group the no-grad forwards like epoch 0's minibatches."
            )
        check_choice(self, "kl_penalty", ("kl", "abs", "mse", "full"))
        check_range(self, "learning_rate", 0.0, None, low_open=True)
        check_range(self, "init_kl_coef", 0.0, None)
        check_range(self, "target", 0.0, None, low_open=True)
        check_range(self, "horizon", 0.0, None, low_open=True)
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "lam", 0.0, 1.0)
        check_range(self, "cliprange", 0.0, None, low_open=True)
        check_range(self, "cliprange_value", 0.0, None, low_open=True)
        check_range(self, "vf_coef", 0.0, None)
        check_range(self, "ratio_threshold", 0.0, None, low_open=True)
        check_range(self, "target_kl", 0.0, None, low_open=True)
        for name in ("score_clip", "max_grad_norm"):
            if getattr(self, name) is not None:
                check_range(self, name, 0.0, None, low_open=True)
                if math.isinf(getattr(self, name)):
                    raise ConfigError(f"PPOConfig.{name}=inf is invalid; pass None to disable it.")
        if self.use_score_norm and not self.use_score_scaling:
            raise ConfigError(
                "PPOConfig.use_score_norm=True has no effect without use_score_scaling=True "
                "(TRL applies the norm only when scaling); set use_score_scaling=True as well."
            )

    def _warn_no_effect(self) -> None:
        defaults = PPOConfig.__dataclass_fields__
        unused = [name for name in NO_EFFECT if getattr(self, name) != _default_of(defaults[name])]
        unused += [f"project_kwargs[{key!r}]" for key in self.project_kwargs if key not in PROJECT_KEYS]
        if unused:
            warnings.warn(
                f"PPOConfig: {', '.join(unused)} {'is' if len(unused) == 1 else 'are'} accepted for TRL compatibility "
                "but have no effect in rlcode (no accelerate Accelerator, no hub pushes, no device-cache clearing).",
                UserWarning, stacklevel=4)

    @property
    def total_ppo_epochs(self) -> int:
        """TRL's ``ceil(steps / batch_size)``."""
        return math.ceil(self.steps / self.batch_size)

    @property
    def logging_dir(self) -> str | None:
        """The directory given by ``project_kwargs`` (``logging_dir``, else ``project_dir``), if any."""
        for key in PROJECT_KEYS:
            if self.project_kwargs.get(key) is not None:
                return str(self.project_kwargs[key])
        return None

    def to_dict(self) -> dict[str, Any]:
        """TRL's ``to_dict``: the fields, nested dicts flattened with ``/``."""
        from rlcode.rlhf.trl_compat import flatten_dict

        return flatten_dict({f.name: getattr(self, f.name) for f in fields(self)})


def _default_of(spec: Any) -> Any:
    return spec.default_factory() if spec.default_factory is not MISSING else spec.default


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return getattr(typing.get_origin(hint) or hint, "__name__", str(hint))


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # numpy integers too, never a bool
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)


def check_field_types(config: Any) -> None:
    """Raise ConfigError naming the first field whose value does not have the declared type."""
    hints = typing.get_type_hints(type(config))
    for spec in fields(config):
        value, hint = getattr(config, spec.name), hints[spec.name]
        if not _matches(value, hint):
            raise ConfigError(
                f"{type(config).__name__}.{spec.name}: got {type(value).__name__} {short_repr(value)}, "
                f"expected {_type_name(hint)}."
            )
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
            object.__setattr__(config, spec.name, int(value))  # a numpy integer becomes a Python int
