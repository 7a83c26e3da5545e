"""PPOConfig: TRL 0.11's PPO fields and defaults, validated up front (trl/trainer/ppo_config.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rlcode.configs import ConfigError, check_choice, check_range, doc_field

KLPenalty = Literal["kl", "abs", "mse", "full"]


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of ``PPOTrainer.step``; names and defaults follow TRL 0.11.4's ``PPOConfig``.

    ``batch_size`` and ``mini_batch_size`` are global: under torchrun each of N processes passes
    ``batch_size / N`` triples to ``step()`` and the update equals the one-process update.
    """

    batch_size: int = doc_field(128, "(query, response, score) triples per step() over all processes")
    mini_batch_size: int = doc_field(128, "rows per PPO minibatch (one forward/backward)")
    gradient_accumulation_steps: int = doc_field(1, "minibatches whose gradients add up to one optimizer step")
    ppo_epochs: int = doc_field(4, "passes over the batch per step()")
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
    whiten_rewards: bool = doc_field(False, "whiten per-token rewards (mean kept) before GAE")
    use_score_scaling: bool = doc_field(False, "divide scores by their running std")
    use_score_norm: bool = doc_field(False, "with use_score_scaling, also subtract the running mean")
    score_clip: float | None = doc_field(None, "clip (scaled) scores to [-score_clip, score_clip]")
    ratio_threshold: float = doc_field(10.0, "zero a minibatch's loss when its mean ratio exceeds this")
    early_stopping: bool = doc_field(False, "stop the epochs when policy KL > 1.5 * target_kl")
    target_kl: float = doc_field(1.0, "KL bound for early_stopping")
    max_grad_norm: float | None = doc_field(None, "clip the gradient norm at every optimizer step")
    seed: int = doc_field(0, "seeds python, numpy (minibatch order) and torch at construction")
    fused_activations: bool = doc_field(
        True, "step() runs the model's Python tanh-GELU (GPT-2's gelu_new) as one fused kernel (equal to float rounding)"
    )
    cpu_heap_cache: bool = doc_field(
        False, "opt-in speed setting: on a CPU under glibc, keep freed memory in the heap so that each minibatch's "
        "large temporaries do not page-fault afresh. It sets glibc's malloc thresholds (mallopt) for the whole "
        "process, for good; see rlcode.rlhf.fast.allocator"
    )
    forward_batch_size: int | None = doc_field(
        None, "rows per no-grad forward (None: epoch 0's minibatches, so the ratios before the first optimizer "
        "step are exactly 1 on any CPU; a number: plain chunks of that many rows, ratios 1 to float rounding)"
    )

    def __post_init__(self) -> None:
        for name in ("batch_size", "mini_batch_size", "gradient_accumulation_steps", "ppo_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"PPOConfig.{name}={value!r} is invalid: allowed integers >= 1; set {name} >= 1.")
        if self.forward_batch_size is not None and (
            isinstance(self.forward_batch_size, bool) or not isinstance(self.forward_batch_size, int)
            or self.forward_batch_size < 1
        ):
            raise ConfigError(
                f"PPOConfig.forward_batch_size={self.forward_batch_size!r} is invalid: allowed None or an "
                "integer >= 1; set it to None to run the whole batch in one forward."
            )
        if self.batch_size % self.backward_batch_size:
            raise ConfigError(
                f"PPOConfig.batch_size={self.batch_size} must be a multiple of mini_batch_size * "
                f"gradient_accumulation_steps = {self.mini_batch_size} * {self.gradient_accumulation_steps} = "
                f"{self.backward_batch_size}; change batch_size, mini_batch_size or gradient_accumulation_steps."
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

    @property
    def backward_batch_size(self) -> int:
        """Rows whose gradients make one optimizer step."""
        return self.mini_batch_size * self.gradient_accumulation_steps
