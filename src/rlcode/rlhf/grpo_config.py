"""GRPOConfig: the hyperparameters of ``GRPOTrainer`` (GRPO and RLOO), validated up front.

Names and defaults follow TRL 1.16's ``GRPOConfig``/``RLOOConfig`` where they exist there. The
dataclass is frozen; derive a changed copy with ``dataclasses.replace(config, field=value)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlcode.configs import ConfigError, check_choice, check_range, doc_field, fail
from rlcode.rlhf.group_advantages import _SCALES

Algorithm = Literal["grpo", "rloo"]


@dataclass(frozen=True)
class GRPOConfig:
    """One trainer, two algorithms: ``algorithm`` picks the advantages and the loss.

    "grpo": advantages from ``estimator`` (GRPO, Dr. GRPO or REINFORCE++-baseline), the clipped
    per-token loss ``group_policy_loss`` aggregated by ``loss_type``, and β·KL estimate in the loss.
    "rloo": leave-one-out advantages, ``rloo_policy_loss`` (one clipped weight per sequence from the
    summed log-ratio), and β·Σ_t KL estimate subtracted from each sequence's reward (TRL 1.16's RLOO).
    ``kl_in_reward`` moves the KL of either algorithm to the other place: in the reward, the gradient
    is that of the sequence-level objective E[r] − β·KL(π‖π_ref), whose maximiser is π ∝ π_ref·exp(r/β);
    in the loss, each token's KL is pulled down without accounting for the later tokens it changes.
    """

    algorithm: Algorithm = doc_field("grpo", "'grpo' or 'rloo': the advantages, loss and place of the KL")
    num_generations: int = doc_field(8, "G: completions per prompt, one group each")
    learning_rate: float = doc_field(1e-6, "Adam learning rate (when no optimizer is given)")
    beta: float = doc_field(0.0, "KL coefficient; 0 builds no reference model at all")
    kl_estimator: Literal["k1", "k2", "k3"] | None = doc_field(
        None, "per-token KL estimate: None is k3 in the loss for grpo, k1 in the reward for rloo (TRL 1.16)")
    kl_in_reward: bool | None = doc_field(
        None, "True: subtract beta * the sequence's summed KL estimate from its score before the advantages; "
              "False: beta * KL in the loss (None: False for grpo, True for rloo, as in TRL 1.16)")
    use_bias_correction_kl: bool = doc_field(
        True, "grpo's in-loss k3 times the importance weight (TRL 1.16's default; its gradient is then that of "
        "KL(pi || ref), see kl_estimators)")
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = doc_field("dapo", "grpo's loss aggregation")
    epsilon: float = doc_field(0.2, "lower clip range of the importance weight")
    epsilon_high: float | None = doc_field(None, "upper clip range (None: epsilon; DAPO uses 0.28)")
    importance_sampling_level: Literal["token", "sequence"] = doc_field(
        "token", "grpo's weights: per token, or GSPO's one per sequence")
    scale_rewards: Literal["group", "batch", "none"] | None = doc_field(
        None, "std scaling of the advantages (None: the estimator's default, see group_advantages)")
    estimator: Literal["grpo", "dr_grpo", "reinforce_pp"] | None = doc_field(
        None, "grpo's advantages (None: 'grpo'); rloo always uses leave-one-out")
    num_iterations: int = doc_field(1, "mu: passes over each generation batch")
    mini_batch_size: int | None = doc_field(None, "rows per forward/backward and optimizer step (None: all rows)")
    max_grad_norm: float | None = doc_field(1.0, "gradient-norm clip of every optimizer step (None: off)")
    max_completion_length: int | None = doc_field(
        None, "dr_grpo's normaliser (None: the batch's longest response)")
    seed: int = doc_field(0, "seeds python, numpy (minibatch order) and torch at construction")
    report_to: Literal["jsonl", "tensorboard", "wandb"] | None = doc_field(
        None, "where step() writes its statistics every step (None: nowhere); metrics.jsonl always")
    logging_dir: str | None = doc_field(
        None, "the run directory of report_to (None: a new runs/grpo-<algorithm>-seed<seed>-<time>-<random>)")
    log_completions: bool = doc_field(
        False, "with report_to and a tokenizer: also a table of each step's prompts, completions and scores")
    onednn_linear: bool = doc_field(True, "linear layers through oneDNN on CPU (rlcode.rlhf.fast.onednn)")
    fused_activations: bool = doc_field(True, "the model's tanh-GELU as one fused kernel inside step()")

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_choice(self, "algorithm", ("grpo", "rloo"))
        check_choice(self, "kl_estimator", (None, "k1", "k2", "k3"))
        check_choice(self, "loss_type", ("grpo", "bnpo", "dr_grpo", "dapo"))
        check_choice(self, "importance_sampling_level", ("token", "sequence"))
        check_choice(self, "estimator", (None, "grpo", "dr_grpo", "reinforce_pp"))
        check_choice(self, "report_to", (None, "jsonl", "tensorboard", "wandb"))
        if self.logging_dir is not None and not isinstance(self.logging_dir, str):
            fail(name, "logging_dir", self.logging_dir, "a folder path (str) or None")
        if self.kl_in_reward is not None and not isinstance(self.kl_in_reward, bool):
            fail(name, "kl_in_reward", self.kl_in_reward, "True, False or None")
        for flag in ("use_bias_correction_kl", "log_completions", "onednn_linear", "fused_activations"):
            if not isinstance(getattr(self, flag), bool):
                fail(name, flag, getattr(self, flag), "True or False")
        if self.algorithm == "rloo" and self.estimator is not None:
            fail(name, "estimator", self.estimator, "None for algorithm='rloo'",
                 "RLOO's advantages are always leave-one-out; leave estimator unset")
        for field_name in ("num_generations", "num_iterations"):
            _check_count(self, field_name, optional=False)
        for field_name in ("mini_batch_size", "max_completion_length"):
            _check_count(self, field_name, optional=True)
        check_range(self, "learning_rate", 0.0, low_open=True)
        check_range(self, "beta", 0.0)
        check_range(self, "epsilon", 0.0, 1.0, high_open=True)
        if self.epsilon_high is not None:
            check_range(self, "epsilon_high", 0.0)
        if self.max_grad_norm is not None:
            check_range(self, "max_grad_norm", 0.0, low_open=True, infinite_fix="pass None to turn clipping off")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            fail(name, "seed", self.seed, "a whole number")
        scales = _SCALES[self.advantage_estimator]
        if self.scale_rewards is not None and self.scale_rewards not in scales:
            fail(name, "scale_rewards", self.scale_rewards, f"one of {list(scales)} for estimator "
                 f"{self.advantage_estimator!r}", "Dr. GRPO is GRPO without the std; use estimator='grpo' to scale")
        if self.num_generations < 2 and (self.algorithm == "rloo" or self.reward_scale == "group"):
            raise ConfigError(f"{name}.num_generations=1 is invalid: {self.algorithm} with scale_rewards="
                              f"{self.reward_scale!r} needs at least 2 completions per prompt.")

    @property
    def advantage_estimator(self) -> Literal["grpo", "dr_grpo", "rloo", "reinforce_pp"]:
        """The ``group_advantages`` estimator: "rloo" for RLOO, else ``estimator`` (default "grpo")."""
        return "rloo" if self.algorithm == "rloo" else (self.estimator or "grpo")

    @property
    def reward_scale(self) -> Literal["group", "batch", "none"]:
        """``scale_rewards`` with the estimator's default filled in."""
        return self.scale_rewards or _SCALES[self.advantage_estimator][0]  # type: ignore[return-value]

    @property
    def kl_kind(self) -> Literal["k1", "k2", "k3"]:
        """``kl_estimator`` with the algorithm's default filled in (TRL 1.16: k3 for GRPO, k1 for RLOO)."""
        if self.kl_estimator is not None:
            return self.kl_estimator
        return "k1" if self.algorithm == "rloo" else "k3"

    @property
    def reward_kl(self) -> bool:
        """``kl_in_reward`` with the algorithm's default filled in (TRL 1.16: loss for GRPO, reward for RLOO)."""
        return self.algorithm == "rloo" if self.kl_in_reward is None else self.kl_in_reward


def _check_count(config: GRPOConfig, field_name: str, optional: bool) -> None:
    value = getattr(config, field_name)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(type(config).__name__, field_name, value, "a whole number >= 1" + (" or None" if optional else ""))


@dataclass(frozen=True)
class RLOOConfig(GRPOConfig):
    """``GRPOConfig`` with ``algorithm="rloo"`` by default: the name TRL 1.16 users look for."""

    algorithm: Algorithm = doc_field("rloo", "'rloo' (the default here) or 'grpo'")
