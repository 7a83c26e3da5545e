"""CausalLMWithValueHead: any ``transformers`` causal LM (or a PEFT-wrapped one) plus a scalar value head.

The head is TRL's ``ValueHead`` (dropout, then ``Linear(hidden, 1)``, named ``v_head.summary`` so
state dicts line up with TRL's). Loading and saving (pickle-free, TRL's file layouts) live in
``rlcode.rlhf.pretrained``, the detection of the fast forward paths in ``rlcode.rlhf.forward_paths``;
``AutoModelForCausalLMWithValueHead`` adds TRL 0.11's forward and state-dict layout.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlcode.rlhf.fast.tied import tied_lookup_and_head, tied_weight
from rlcode.rlhf.forward_paths import can_split_heads, split_heads_match, tied_inputs_match
from rlcode.rlhf.modes import dropout_free_forwards, is_checkpointing, set_checkpointing
from rlcode.rlhf.peft_support import is_peft_model

LM_HEAD_NAMES = ("lm_head", "embed_out", "output_layer")  # TRL 0.11's lm_head_namings


def hidden_size_of(config: Any) -> int:
    """The width of the last hidden state, across the names transformers configs use."""
    for name in ("word_embed_proj_dim", "hidden_size", "n_embd", "d_model"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(
        f"cannot tell the hidden size of {type(config).__name__}; it has none of word_embed_proj_dim, "
        "hidden_size, n_embd, d_model. Build the value head yourself: CausalLMWithValueHead(model, hidden_size=...)."
    )


def language_model(model: Any) -> Any:
    """The transformers model inside a ``PeftModel`` (LoRA layers sit in it, in place), else ``model``."""
    return model.get_base_model() if is_peft_model(model) else model


def _check_lm_head(model: Any) -> None:
    lm = language_model(model)
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    if head is None and not any(isinstance(getattr(lm, name, None), nn.Module) for name in LM_HEAD_NAMES):
        raise ValueError(
            f"{type(lm).__name__} has no language-model head (get_output_embeddings() is None and it has none of "
            f"{', '.join(LM_HEAD_NAMES)}); load it with AutoModelForCausalLM, not AutoModel."
        )


class ValueHead(nn.Module):
    """Dropout, then a linear map from the last hidden state to one value per token."""

    def __init__(self, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout else nn.Identity()
        self.summary = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(hidden)
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)  # [...]


class CausalLMWithValueHead(nn.Module):
    """A causal LM whose forward returns ``(logits, values)``, both over every position.

    Two forward paths of ``selected_outputs`` (the trainer's forwards) are public switches, each
    ``True``, ``False`` or ``None`` (the default: detect, see below), given to the constructor,
    ``from_pretrained``/``from_config``, or assigned to the attribute of the same name:

    * ``split_heads``: run the backbone, then the LM head on the selected positions only (most of a
      small model's forward cost is the vocabulary projection). Needs the model to be
      ``lm_head(base_model(x))`` with a ``Linear`` head; ``False`` runs the model's own forward.
    * ``tied_inputs`` (with ``split_heads``): when the input embedding and LM head share one weight
      (GPT-2's ``wte``), feed the backbone ``inputs_embeds`` from ``rlcode.rlhf.fast.tied`` so that weight
      gets one gradient buffer. Needs ``base_model(inputs_embeds=embed(ids))`` to equal
      ``base_model(input_ids=ids)`` (models that derive positions from pad ids do not).

    Detection (``None``) is decided once, on first use, by running both forwards on a fixed 7-token
    probe (ids 0..6) in eval mode without gradients and comparing them (``split_heads``: within
    1e-4; ``tied_inputs``: exactly). No randomness enters, so for given model code and weights the
    answer is always the same; set the switch to skip the probe or to overrule it.
    """

    def __init__(
        self, pretrained_model: Any, summary_dropout_prob: float | None = None, hidden_size: int | None = None,
        *, split_heads: bool | None = None, tied_inputs: bool | None = None, v_head_init_strategy: str | None = None,
        v_head_initializer_range: float = 0.2,
    ) -> None:
        """``pretrained_model`` is a transformers causal LM, a ``PeftModel`` of one, or a config to build one from.

        ``v_head_init_strategy`` as TRL's: None keeps torch's default Linear init, "normal" draws the weight
        from N(0, ``v_head_initializer_range``) and zeroes the bias.
        """
        super().__init__()
        from transformers import PretrainedConfig

        if isinstance(pretrained_model, PretrainedConfig):
            from transformers import AutoModelForCausalLM

            pretrained_model = AutoModelForCausalLM.from_config(pretrained_model)
        _check_lm_head(pretrained_model)
        if v_head_init_strategy not in (None, "normal"):
            raise ValueError(f"v_head_init_strategy must be None (torch's default) or 'normal', got {v_head_init_strategy!r}.")
        config = pretrained_model.config
        if summary_dropout_prob is None:  # TRL reads it from the model config, default 0.1
            summary_dropout_prob = getattr(config, "summary_dropout_prob", None)
            summary_dropout_prob = 0.1 if summary_dropout_prob is None else summary_dropout_prob
        self.pretrained_model: Any = pretrained_model
        self.summary_dropout_prob = float(summary_dropout_prob)
        self.v_head = ValueHead(hidden_size or hidden_size_of(config), self.summary_dropout_prob)
        if v_head_init_strategy == "normal":
            with torch.no_grad():
                self.v_head.summary.weight.normal_(0.0, v_head_initializer_range)
                self.v_head.summary.bias.zero_()
        parameter = next(pretrained_model.parameters(), None)
        if parameter is not None:
            self.v_head.to(parameter.device)
        self._split_heads: bool | None = None  # whether lm_head(backbone(x)) == model(x).logits
        self._tied_inputs: bool | None = None  # whether backbone(inputs_embeds=lookup(x)) == backbone(x)
        self.split_heads = split_heads  # type: ignore[assignment]  # None: detect on first use
        self.tied_inputs = tied_inputs  # type: ignore[assignment]

    # construction -------------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, config: Any, summary_dropout_prob: float | None = None, *, split_heads: bool | None = None,
        tied_inputs: bool | None = None, **kwargs: Any,
    ) -> Any:
        """A randomly initialised LM from a transformers config (no download), plus a fresh head."""
        from transformers import AutoModelForCausalLM

        return cls(AutoModelForCausalLM.from_config(config, **kwargs), summary_dropout_prob,
                   split_heads=split_heads, tied_inputs=tied_inputs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *model_args: Any, **kwargs: Any) -> Any:
        """The LM from a path, a hub id or a built model, and its saved value head (TRL 0.11's arguments).

        rlcode/TRL options: ``summary_dropout_prob``, ``v_head_init_strategy``, ``v_head_initializer_range``,
        ``split_heads``, ``tied_inputs``, ``peft_config`` (wrap with ``peft.get_peft_model``), ``is_trainable``
        (for a saved adapter). The rest go to ``AutoModelForCausalLM.from_pretrained`` (``torch_dtype``,
        ``gguf_file``, ``cache_dir``, ...). Pickle-only weights are refused before anything loads; without a
        saved head a ``UserWarning`` says where it looked (see ``rlcode.rlhf.pretrained``).
        """
        from rlcode.rlhf.pretrained import from_pretrained

        return from_pretrained(cls, pretrained_model_name_or_path, model_args, kwargs)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """The LM with ``v_head.*`` inside its safetensors weights (TRL's layout); a PEFT model's adapter plus
        ``value_head.safetensors``; and ``value_head.json`` (see ``rlcode.rlhf.pretrained``)."""
        from rlcode.rlhf.pretrained import save_with_value_head

        save_with_value_head(self, save_directory, *args, **kwargs)

    def frozen_copy(self) -> CausalLMWithValueHead:
        """A deep copy in eval mode with no gradients: the reference model."""
        reference = copy.deepcopy(self)
        reference.eval()
        reference.requires_grad_(False)
        return reference

    # PEFT, gradient checkpointing and step() modes (interface used by PPOTrainer) -----------------
    @property
    def is_peft_model(self) -> bool:
        """Whether the LM is a ``peft.PeftModel`` (its reference is then itself with adapters disabled)."""
        return is_peft_model(self.pretrained_model)

    def adapters_disabled(self) -> Any:
        """A context in which the LM runs without its adapters (a no-op for a plain model)."""
        return self.pretrained_model.disable_adapter() if self.is_peft_model else nullcontext()

    @contextmanager
    def training_forwards(self) -> Iterator[None]:
        """The mode of every forward in ``step()``: dropout off everywhere (so the first ratio is exactly 1),
        with gradient checkpointing still running where it is enabled (``rlcode.rlhf.modes``)."""
        with dropout_free_forwards(self):
            yield

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Checkpoint the LM's layers in ``step()``'s backward; non-reentrant unless told otherwise, so a
        LoRA model whose embeddings are frozen still gets gradients."""
        set_checkpointing(language_model(self.pretrained_model), True, gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self) -> None:
        set_checkpointing(language_model(self.pretrained_model), False)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return is_checkpointing(language_model(self.pretrained_model))

    # forwards -----------------------------------------------------------------------------------
    @property
    def config(self) -> Any:
        return self.pretrained_model.config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def vocab_size(self) -> int:
        head = language_model(self.pretrained_model).get_output_embeddings()
        if isinstance(head, nn.Linear):
            return head.out_features
        return int(self.config.vocab_size)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs.setdefault("use_cache", False)
        output = self.pretrained_model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **kwargs
        )
        return output.logits.float(), self.v_head(output.hidden_states[-1])  # [B, T, V], [B, T]

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.pretrained_model.generate(*args, **kwargs)

    def selected_outputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor, values: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and values only where ``positions`` [B, T] is True: ([N, V], [N] or None).

        With ``split_heads`` the vocabulary projection runs on the N selected hidden states only, which is
        most of the cost of a small-model forward. With gradients, ``tied_inputs`` and a tied
        embedding/head weight, ``rlcode.rlhf.fast.tied`` gives that weight one gradient (see the class).
        """
        if self.split_heads:
            lm = language_model(self.pretrained_model)  # a PeftModel's LoRA layers sit inside it, in place
            base = lm.base_model
            weight = tied_weight(lm) if torch.is_grad_enabled() and self.tied_inputs else None
            if weight is not None and weight.requires_grad:
                lookup, head = tied_lookup_and_head(weight)
                hidden = base(inputs_embeds=lookup(input_ids), attention_mask=attention_mask, use_cache=False)[0]
            else:
                head = lm.get_output_embeddings()
                hidden = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]  # [B, T, d]
            selected = hidden[positions]  # [N, d]
            logits = head(selected)
        else:
            output = self.pretrained_model(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False
            )
            selected = output.hidden_states[-1][positions]
            logits = output.logits[positions]
        return logits.float(), (self.v_head(selected) if values else None)

    @property
    def tied_inputs(self) -> bool:
        """Whether the split-head path feeds the backbone a tied lookup (see the class); set it to choose."""
        if self._tied_inputs is None:
            self._tied_inputs = self._check_tied_inputs()
        return self._tied_inputs

    @tied_inputs.setter
    def tied_inputs(self, value: bool | None) -> None:
        self._tied_inputs = _switch("tied_inputs", value)

    def _check_tied_inputs(self) -> bool:
        return tied_inputs_match(language_model(self.pretrained_model), self.vocab_size, self.device)

    @property
    def split_heads(self) -> bool:
        """Whether ``selected_outputs`` runs the LM head on the selected positions only (see the class)."""
        if self._split_heads is None:
            self._split_heads = self._can_split() and self._check_split_heads()
        return self._split_heads

    @split_heads.setter
    def split_heads(self, value: bool | None) -> None:
        if _switch("split_heads", value) and not self._can_split():
            raise ValueError(
                f"split_heads=True needs a model that is lm_head(base_model(x)) with a Linear head; "
                f"{type(self.pretrained_model).__name__} is not. Pass split_heads=False or None."
            )
        self._split_heads = value

    def _can_split(self) -> bool:
        return can_split_heads(language_model(self.pretrained_model))

    def _check_split_heads(self) -> bool:
        return split_heads_match(language_model(self.pretrained_model), self.vocab_size, self.device)


def _switch(name: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be True, False or None (detect), got {value!r}.")
    return value


class AutoModelForCausalLMWithValueHead(CausalLMWithValueHead):
    """TRL 0.11's name and surface: ``forward`` returns ``(lm_logits, loss, value)`` and ``state_dict`` uses
    TRL's layout (the LM's own keys, no ``pretrained_model.`` prefix, plus ``v_head.summary.*``).

    Everything else is ``CausalLMWithValueHead``'s, so ``PPOTrainer`` takes either class.
    """

    is_sequential_parallel = False  # TRL's flag for a model split over devices (not supported here)
    supports_rm_adapter = False  # TRL's reward adapter is refused by from_pretrained

    @property
    def is_loaded_in_8bit(self) -> bool:
        return bool(getattr(language_model(self.pretrained_model), "is_loaded_in_8bit", False))

    @property
    def is_loaded_in_4bit(self) -> bool:
        return bool(getattr(language_model(self.pretrained_model), "is_loaded_in_4bit", False))

    def prepare_inputs_for_generation(self, *args: Any, **kwargs: Any) -> Any:
        return self.pretrained_model.prepare_inputs_for_generation(*args, **kwargs)

    @property
    def current_device(self) -> torch.device:
        """The device of the weights (TRL 0.11 gives the process's GPU index or "cpu")."""
        return self.device

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor | None = None, past_key_values: Any = None,
        attention_mask: torch.Tensor | None = None, return_past_key_values: bool = False, **kwargs: Any,
    ) -> tuple[Any, ...]:
        """``(lm_logits [B, T, V] float32, loss or None, value [B, T])``, and the LM's ``past_key_values``
        after them when ``return_past_key_values``. ``kwargs`` (e.g. ``labels``) go to the LM."""
        if past_key_values is not None:  # only when given: transformers 5.x calls the argument ``cache``
            kwargs["past_key_values"] = past_key_values
        output = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                                       **kwargs)
        hidden = output.hidden_states[-1].to(self.v_head.summary.weight.device)
        result = (output.logits.float(), getattr(output, "loss", None), self.v_head(hidden))  # [B, T, V], [], [B, T]
        if not return_past_key_values:
            return result
        cache = getattr(output, "past_key_values", None)
        return (*result, getattr(output, "cache", None) if cache is None else cache)

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """TRL's layout: the LM's keys as the LM names them, plus ``v_head.summary.weight``/``bias``. (For a
        PEFT model TRL keeps only the head's; here the PeftModel's keys are kept too, adapters included.)"""
        if args or destination is not None or prefix:  # called as a submodule of another module: nn.Module's
            return super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        state = self.pretrained_model.state_dict(keep_vars=keep_vars)
        state.update({f"v_head.{k}": v for k, v in self.v_head.state_dict(keep_vars=keep_vars).items()})
        return state

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Takes TRL's layout (see ``state_dict``) or nn.Module's (keys under ``pretrained_model.``)."""
        if not any(key.startswith("pretrained_model.") for key in state_dict):
            state_dict = {(k if k.startswith("v_head.") else f"pretrained_model.{k}"): v for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def post_init(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load the head from a state dict holding ``v_head.*`` keys (TRL's hook after ``from_pretrained``)."""
        head = {k.removeprefix("v_head."): v for k, v in state_dict.items() if k.startswith("v_head.")}
        if not head:
            raise ValueError("post_init: the state dict holds no v_head.* keys, so there is no value head to load.")
        self.v_head.load_state_dict(head)

    def push_to_hub(self, *args: Any, **kwargs: Any) -> Any:
        """The LM's ``push_to_hub`` with the head inside its weights as ``v_head.*`` (TRL's layout)."""
        if self.is_peft_model:
            raise ValueError("push_to_hub of a PEFT model would upload the adapter without the value head; "
                             "save_pretrained(directory) and upload that folder (huggingface_hub.upload_folder).")
        self.pretrained_model.add_module("v_head", self.v_head)  # for the duration of the upload only
        try:
            return self.pretrained_model.push_to_hub(*args, **kwargs)
        finally:
            del self.pretrained_model.v_head

    def enable_input_require_grads(self) -> None:
        language_model(self.pretrained_model).enable_input_require_grads()

    def compute_reward_score(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("This model does not support reward modeling adapter (rlcode does not load reward_adapter).")
