"""PEFT (LoRA) policies: wrapping, checking target modules, and a JSON form of the adapter config.

A PEFT policy is its own reference: ``PPOTrainer`` computes the reference log-probs with the adapters
disabled, so one copy of the base weights serves both, and only the adapters and the value head train.
"""

from __future__ import annotations

import json
from typing import Any

from torch import nn


def is_peft_model(model: Any) -> bool:
    """Whether ``model`` is a ``peft.PeftModel`` (False when peft is not installed)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def require_peft() -> Any:
    try:
        import peft
    except ImportError as error:
        raise ImportError("peft_config needs the peft package: pip install 'rlcode[lm]' (or pip install peft).") from error
    return peft


def _adaptable_leaf_names(model: nn.Module) -> list[str]:
    """The last name of every Linear/Conv1D/Embedding module: what ``target_modules`` may list."""
    names = set()
    for name, module in model.named_modules():
        kind = type(module).__name__
        if name and (isinstance(module, (nn.Linear, nn.Embedding, nn.Conv2d)) or kind == "Conv1D"):
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def _check_target_modules(model: nn.Module, peft_config: Any) -> None:
    """Every listed target module must name a module of the model (peft itself only needs one to)."""
    targets = getattr(peft_config, "target_modules", None)
    if targets is None or isinstance(targets, str):  # a regex or "all-linear": peft matches it
        return
    names = [name for name, _ in model.named_modules()]
    missing = sorted(t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names))
    if missing:
        raise ValueError(
            f"peft_config.target_modules {missing} name no module of {type(model).__name__}; its Linear/Conv1D/"
            f"Embedding modules are named {_adaptable_leaf_names(model)}. List some of those."
        )


def with_adapters(model: nn.Module, peft_config: Any) -> Any:
    """``peft.get_peft_model(model, peft_config)``, after checking the config against the model."""
    peft = require_peft()
    if not isinstance(peft_config, peft.PeftConfig):
        raise TypeError(f"peft_config must be a peft.PeftConfig (e.g. LoraConfig), got {type(peft_config).__name__}.")
    if isinstance(peft_config, peft.PromptLearningConfig):  # as TRL 0.11: they change the sequence layout
        raise ValueError(f"{type(peft_config).__name__} (prompt learning) is not supported for PPO; use LoraConfig.")
    _check_target_modules(model, peft_config)
    try:
        return peft.get_peft_model(model, peft_config)
    except ValueError as error:  # peft's "Target modules ... not found", for a pattern that matched nothing
        if "target" not in str(error).lower():
            raise
        raise ValueError(
            f"peft could not apply {type(peft_config).__name__} to {type(model).__name__} ({error}); its Linear/"
            f"Conv1D/Embedding modules are named {_adaptable_leaf_names(model)}."
        ) from error


def adapter_configs(model: Any) -> dict[str, dict[str, Any]]:
    """Each adapter's config as JSON-ready dicts (sets become sorted lists), keyed by adapter name."""
    out = {}
    for name, config in model.peft_config.items():
        data = config.to_dict()
        out[name] = json.loads(json.dumps(data, default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v)))
    return out


def rebuilt_with_adapters(model: nn.Module, configs: dict[str, dict[str, Any]]) -> Any:
    """``model`` wrapped with the adapters ``adapter_configs`` described (weights still to be loaded)."""
    peft = require_peft()
    (first, first_config), *others = configs.items()
    wrapped = peft.get_peft_model(model, peft.get_peft_config(dict(first_config)), adapter_name=first)
    for name, config in others:
        wrapped.add_adapter(name, peft.get_peft_config(dict(config)))
    return wrapped
