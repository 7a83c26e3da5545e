"""Pickle-free trainer checkpoints (``rlcode.run.checkpoints``) from which ``step()`` resumes exactly.

Holds the policy with its value head (and, for a PEFT policy, its adapter configs), the reference model
(none for a PEFT policy or with GRPO's beta = 0), the optimizer and learning-rate scheduler, PPO's KL
coefficient and running score moments, the step counter and the python/numpy/torch RNG states.
``PPOTrainer`` and ``GRPOTrainer`` share it; each reads only checkpoints of its own kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlcode.configs import config_from_dict, config_to_dict
from rlcode.rlhf.distributed import is_main_process
from rlcode.rlhf.peft_support import adapter_configs, rebuilt_with_adapters
from rlcode.run.checkpoints import (
    Checkpoint,
    capture_rng_state,
    load_checkpoint,
    optimizer_from_checkpoint,
    optimizer_to_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied embeddings): copy the repeats."""
    seen: set[tuple[int, Any]] = set()
    out = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[name] = tensor.detach().clone() if key in seen else tensor.detach()
        seen.add(key)
    return out


def save_trainer(trainer: Any, directory: str | Path) -> Path:
    """Write ``directory/checkpoint`` atomically (only the main process writes under torchrun)."""
    rng_json, rng_tensors = capture_rng_state()
    if torch.cuda.is_available():  # sampling on a GPU draws from its own generator
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            rng_tensors[f"cuda_{index}"] = state
    optimizer_tensors, optimizer_meta = optimizer_to_checkpoint(trainer.optimizer)
    model = trainer.model
    checkpoint = Checkpoint(
        config={
            trainer.checkpoint_name: config_to_dict(trainer.config),  # "ppo" or "grpo": which trainer loads it
            "model": model.config.to_dict(),
            "model_class": type(model).__name__,
            "summary_dropout_prob": model.summary_dropout_prob,
            # the attention kernel changes float results; rebuild the model with the same one
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            # a PEFT policy: its adapters' configs, from which load() rebuilds the same PeftModel
            "peft": adapter_configs(model.pretrained_model) if model.is_peft_model else None,
            # a reference sharing the policy's bottom layers is rebuilt sharing them again
            "num_shared_layers": getattr(trainer, "num_shared_layers", None),
        },
        tensors={
            # nn.Module's layout (keys under pretrained_model.) for either class, whatever its state_dict() gives
            "model": _untied(nn.Module.state_dict(model)),
            # no ref_model entry when the reference is the policy itself with its adapters disabled
            **({} if trainer.ref_model is None else {"ref_model": _untied(nn.Module.state_dict(trainer.ref_model))}),
            "optimizer": optimizer_tensors,
            "rng": rng_tensors,
        },
        state={
            "step": trainer.current_step,
            # PPO's adaptive KL coefficient and running score moments (GRPO has neither)
            **{name: getattr(trainer, name).state_dict() for name in ("kl_controller", "score_moments")
               if hasattr(trainer, name)},
            "optimizer": optimizer_meta,
            "rng": rng_json,
            "lr_scheduler": _scheduler_state(trainer.lr_scheduler),
        },
    )
    if not is_main_process():
        from rlcode.run.checkpoints import checkpoint_path

        return checkpoint_path(directory)
    return save_checkpoint(directory, checkpoint)


def _scheduler_state(scheduler: Any) -> dict[str, Any] | None:
    """A learning-rate scheduler's state as JSON (schedulers hold numbers; a closure-based one, such as
    LambdaLR's functions, is rebuilt by the caller and only its counters are restored)."""
    if scheduler is None:
        return None
    state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    try:
        json.dumps(state)
    except TypeError as error:
        raise ValueError(
            f"save(): the state of {type(scheduler).__name__} is not plain numbers ({error}); use a torch.optim "
            "scheduler whose state_dict() holds numbers, or save without lr_scheduler."
        ) from None
    return state


def _model_from_config(data: dict[str, Any], dropout: float, attention: str | None, class_name: str = "",
                       adapters: dict[str, Any] | None = None) -> nn.Module:
    """The saved model's architecture with fresh weights (loaded next), adapters included."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from rlcode.rlhf import value_head

    data = {k: v for k, v in data.items() if k != "_attn_implementation_autoset"}
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    kwargs: dict[str, Any] = {"attn_implementation": attention} if attention else {}
    lm = AutoModelForCausalLM.from_config(config, **kwargs)
    if adapters:
        lm = rebuilt_with_adapters(lm, adapters)
    cls = value_head.AutoModelForCausalLMWithValueHead if class_name == "AutoModelForCausalLMWithValueHead" else (
        value_head.CausalLMWithValueHead)
    return cls(lm, summary_dropout_prob=dropout)


def load_trainer(cls: type[Any], directory: str | Path, model: nn.Module | None = None, ref_model: nn.Module | None = None,
                 tokenizer: Any = None, optimizer: torch.optim.Optimizer | None = None,
                 lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> Any:
    """Rebuild the trainer, then restore weights, optimizer, controller, moments and RNG states.

    A PEFT checkpoint (no reference weights: the reference is the policy with its adapters disabled) is
    rebuilt from the saved adapter configs when no model is given; a given model must carry the same adapters.
    """
    from rlcode.rlhf.value_head import CausalLMWithValueHead

    checkpoint = load_checkpoint(directory, framework="torch")
    if cls.checkpoint_name not in checkpoint.config:
        saved_by = next((name for name in ("ppo", "grpo") if name in checkpoint.config), "another program")
        raise ValueError(f"{directory} holds a {saved_by} checkpoint; load it with the trainer that saved it, "
                         f"not {cls.__name__}.load.")
    config = config_from_dict(cls.config_class, checkpoint.config[cls.checkpoint_name], source=str(directory))
    dropout = checkpoint.config["summary_dropout_prob"]
    attention = checkpoint.config.get("attn_implementation")
    adapters = checkpoint.config.get("peft")
    if model is None:
        model = _model_from_config(checkpoint.config["model"], dropout, attention,
                                   checkpoint.config.get("model_class", ""), adapters)
    if not isinstance(model, CausalLMWithValueHead):
        model = CausalLMWithValueHead(model, summary_dropout_prob=dropout)
    if bool(adapters) != model.is_peft_model:
        raise ValueError(
            f"{directory} was saved from a {'PEFT' if adapters else 'plain (non-PEFT)'} policy but the model passed "
            f"to load() is {'a PeftModel' if model.is_peft_model else 'not a PeftModel'}; pass the same kind of "
            "model, or model=None to rebuild it from the checkpoint."
        )
    scheduler_state = checkpoint.state.get("lr_scheduler")
    if scheduler_state is not None and lr_scheduler is None:
        raise ValueError(
            f"{directory} was saved with a learning-rate scheduler; pass load(..., optimizer=..., lr_scheduler=...) "
            "with a scheduler built on that optimizer, so the schedule resumes where it stopped."
        )
    nn.Module.load_state_dict(model, checkpoint.tensors["model"])
    shared = checkpoint.config.get("num_shared_layers")
    if "ref_model" in checkpoint.tensors and ref_model is None and shared is not None:
        # the reference shares the policy's bottom layers again; its own upper layers load below
        trainer = cls(config, model, tokenizer=tokenizer, optimizer=optimizer, num_shared_layers=shared,
                      lr_scheduler=lr_scheduler)
        nn.Module.load_state_dict(trainer.ref_model, checkpoint.tensors["ref_model"])
    else:
        if "ref_model" in checkpoint.tensors:
            if ref_model is None:
                ref_model = _model_from_config(checkpoint.config["model"], dropout, attention)
            if not isinstance(ref_model, CausalLMWithValueHead):
                ref_model = CausalLMWithValueHead(ref_model, summary_dropout_prob=dropout)
            nn.Module.load_state_dict(ref_model, checkpoint.tensors["ref_model"])
            ref_model.to(model.device)
        trainer = cls(config, model, ref_model=ref_model, tokenizer=tokenizer, optimizer=optimizer,
                      lr_scheduler=lr_scheduler)
    if lr_scheduler is not None and scheduler_state is not None:
        lr_scheduler.load_state_dict({**lr_scheduler.state_dict(), **scheduler_state})
    # load_state_dict moves each state tensor to its parameter's device (and keeps Adam's step as it wants)
    optimizer_from_checkpoint(trainer.optimizer, checkpoint.tensors.get("optimizer", {}), checkpoint.state["optimizer"])
    for name in ("kl_controller", "score_moments"):
        if hasattr(trainer, name):
            getattr(trainer, name).load_state_dict(checkpoint.state[name])
    trainer.current_step = int(checkpoint.state["step"])
    rng_tensors = checkpoint.tensors.get("rng", {})
    restore_rng_state(checkpoint.state["rng"], rng_tensors)
    for name, state in rng_tensors.items():
        index = int(name.removeprefix("cuda_")) if name.startswith("cuda_") else None
        if index is not None and index < torch.cuda.device_count():
            torch.cuda.set_rng_state(state, device=index)
    return trainer
