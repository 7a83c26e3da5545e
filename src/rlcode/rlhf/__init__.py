"""RLHF tier: TRL 0.11's legacy ``PPOTrainer.step(queries, responses, scores)`` for causal LMs.

Names are imported on first use (PEP 562), so that building the ``rlcode`` command line, which
imports ``rlcode.rlhf.commands``, does not pay for importing torch and transformers, and so that the
core install (no transformers) can build it at all. This tier needs ``pip install 'rlcode[lm]'``;
without it, the first name used raises ``rlcode.extras.MissingExtra`` (an ImportError) saying so.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from rlcode.extras import require


def require_lm() -> ModuleType:
    """``transformers``, or ``MissingExtra``: "the language-model tier needs transformers, ...[lm]'"."""
    return require("transformers", "lm", "the language-model tier")


_WHERE = {
    "PPOConfig": "config",
    "generate_responses": "generation",
    "GRPOConfig": "grpo_config", "GRPOTrainer": "grpo_trainer", "RLOOConfig": "grpo_config",
    "RLOOTrainer": "grpo_trainer",
    "group_advantages": "group_advantages", "group_policy_loss": "group_losses",
    "rloo_policy_loss": "group_losses",
    "exact_kl": "kl_estimators", "kl_estimate": "kl_estimators",
    "AdaptiveKLController": "kl", "FixedKLController": "kl", "kl_penalty": "kl",
    "PPOTrainer": "ppo_trainer", "set_seed": "ppo_trainer",
    "RunningMoments": "rewards", "processed_scores": "rewards", "token_advantages": "rewards",
    "token_rewards": "rewards",
    "ResponseBatch": "sequences", "response_forward": "sequences",
    "AutoModelForCausalLMWithValueHead": "value_head", "CausalLMWithValueHead": "value_head", "ValueHead": "value_head",
    # what TRL 0.11 PPO scripts import from trl and trl.core (rlcode.rlhf.trl_compat)
    "LengthSampler": "trl_compat", "create_reference_model": "trl_compat", "respond_to_batch": "trl_compat",
    "masked_mean": "trl_compat", "masked_var": "trl_compat", "masked_whiten": "trl_compat", "whiten": "trl_compat",
    "logprobs_from_logits": "trl_compat", "entropy_from_logits": "trl_compat", "clip_by_value": "trl_compat",
    "flatten_dict": "trl_compat", "stack_dicts": "trl_compat", "stats_to_np": "trl_compat",
    "convert_to_scalar": "trl_compat", "top_k_top_p_filtering": "trl_compat",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rlcode.rlhf' has no attribute {name!r}")
    require_lm()
    return getattr(importlib.import_module(f"rlcode.rlhf.{_WHERE[name]}"), name)
