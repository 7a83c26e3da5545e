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
    "AdaptiveKLController": "kl", "FixedKLController": "kl", "kl_penalty": "kl",
    "PPOTrainer": "ppo_trainer", "set_seed": "ppo_trainer",
    "RunningMoments": "rewards", "processed_scores": "rewards", "token_advantages": "rewards",
    "token_rewards": "rewards",
    "ResponseBatch": "sequences", "response_forward": "sequences",
    "AutoModelForCausalLMWithValueHead": "value_head", "CausalLMWithValueHead": "value_head", "ValueHead": "value_head",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rlcode.rlhf' has no attribute {name!r}")
    require_lm()
    return getattr(importlib.import_module(f"rlcode.rlhf.{_WHERE[name]}"), name)
