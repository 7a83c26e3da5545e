"""CausalLMWithValueHead: any ``transformers`` causal LM plus a scalar value head.

The head is TRL's ``ValueHead`` (dropout, then ``Linear(hidden, 1)``, named ``v_head.summary`` so
state dicts line up with TRL's). Weights are saved as safetensors: the LM through
``save_pretrained`` and the head in ``value_head.safetensors`` beside it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlcode.rlhf.fast.tied import tied_lookup_and_head, tied_weight

VALUE_HEAD_WEIGHTS = "value_head.safetensors"
VALUE_HEAD_CONFIG = "value_head.json"


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


def _saved_value_head(directory: Path) -> dict[str, torch.Tensor]:
    """The head saved by ``save_pretrained``, or by TRL (``v_head.*`` keys inside model.safetensors)."""
    from safetensors import safe_open

    for name in (VALUE_HEAD_WEIGHTS, "model.safetensors"):
        path = directory / name
        if path.is_file():
            with safe_open(str(path), framework="pt") as handle:
                state = {k.removeprefix("v_head."): handle.get_tensor(k) for k in handle.keys() if k.startswith("v_head.")}
            if state:
                return state
    return {}


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
        *, split_heads: bool | None = None, tied_inputs: bool | None = None,
    ) -> None:
        """``pretrained_model`` is a transformers causal LM, or a transformers config to build one from."""
        super().__init__()
        from transformers import PretrainedConfig

        if isinstance(pretrained_model, PretrainedConfig):
            from transformers import AutoModelForCausalLM

            pretrained_model = AutoModelForCausalLM.from_config(pretrained_model)
        config = pretrained_model.config
        if summary_dropout_prob is None:  # TRL reads it from the model config, default 0.1
            summary_dropout_prob = getattr(config, "summary_dropout_prob", None)
            summary_dropout_prob = 0.1 if summary_dropout_prob is None else summary_dropout_prob
        self.pretrained_model: Any = pretrained_model
        self.summary_dropout_prob = float(summary_dropout_prob)
        self.v_head = ValueHead(hidden_size or hidden_size_of(config), self.summary_dropout_prob)
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
    ) -> CausalLMWithValueHead:
        """A randomly initialised LM from a transformers config (no download), plus a fresh head."""
        from transformers import AutoModelForCausalLM

        return cls(AutoModelForCausalLM.from_config(config, **kwargs), summary_dropout_prob,
                   split_heads=split_heads, tied_inputs=tied_inputs)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, summary_dropout_prob: float | None = None, *, split_heads: bool | None = None,
        tied_inputs: bool | None = None, **kwargs: Any,
    ) -> CausalLMWithValueHead:
        """Load the LM with ``AutoModelForCausalLM.from_pretrained`` and, when saved, the value head."""
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
        directory = Path(name_or_path)
        head_config = directory / VALUE_HEAD_CONFIG
        if summary_dropout_prob is None and head_config.is_file():
            summary_dropout_prob = json.loads(head_config.read_text())["summary_dropout_prob"]
        wrapped = cls(model, summary_dropout_prob, split_heads=split_heads, tied_inputs=tied_inputs)
        state = _saved_value_head(directory)
        if state:
            wrapped.v_head.load_state_dict(state)
        return wrapped

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        """Save the LM (safetensors, via transformers) and the value head beside it.

        No ``safe_serialization`` default is passed: safetensors is what transformers writes from 4.35 on,
        and 5.x no longer has the argument (an unknown kwarg goes on to ``create_repo`` under ``push_to_hub``).
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        self.pretrained_model.save_pretrained(directory, **kwargs)
        head = {f"v_head.{k}": v.detach().cpu().contiguous() for k, v in self.v_head.state_dict().items()}
        save_file(head, str(directory / VALUE_HEAD_WEIGHTS))
        (directory / VALUE_HEAD_CONFIG).write_text(json.dumps({"summary_dropout_prob": self.summary_dropout_prob}))

    def frozen_copy(self) -> CausalLMWithValueHead:
        """A deep copy in eval mode with no gradients: the reference model."""
        reference = copy.deepcopy(self)
        reference.eval()
        reference.requires_grad_(False)
        return reference

    # PEFT and step() modes (interface used by PPOTrainer) ------------------------------------------
    @property
    def is_peft_model(self) -> bool:
        """Whether the LM is a ``peft.PeftModel`` (its reference is then itself with adapters disabled)."""
        return False

    def adapters_disabled(self) -> Any:
        """A context in which the LM runs without its adapters (a no-op for a plain model)."""
        return nullcontext()

    @contextmanager
    def training_forwards(self) -> Iterator[None]:
        """The mode of every forward in ``step()``: dropout off everywhere (so the first ratio is exactly 1)."""
        self.eval()
        yield

    # forwards -----------------------------------------------------------------------------------
    @property
    def config(self) -> Any:
        return self.pretrained_model.config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def vocab_size(self) -> int:
        head = self.pretrained_model.get_output_embeddings()
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
            base = self.pretrained_model.base_model
            weight = tied_weight(self.pretrained_model) if torch.is_grad_enabled() and self.tied_inputs else None
            if weight is not None and weight.requires_grad:
                lookup, head = tied_lookup_and_head(weight)
                hidden = base(inputs_embeds=lookup(input_ids), attention_mask=attention_mask, use_cache=False)[0]
            else:
                head = self.pretrained_model.get_output_embeddings()
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
        model: Any = self.pretrained_model
        if tied_weight(model) is None:
            return False
        was_training = model.training
        model.eval()  # dropout would make the two forwards differ
        try:
            with torch.no_grad():
                ids = torch.arange(min(7, self.vocab_size), device=self.device).unsqueeze(0)
                mask = torch.ones_like(ids)
                by_ids = model.base_model(input_ids=ids, attention_mask=mask, use_cache=False)[0]
                embeds = model.get_input_embeddings()(ids)
                by_embeds = model.base_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)[0]
            return torch.equal(by_ids, by_embeds)
        finally:
            model.train(was_training)

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
        model: Any = self.pretrained_model
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        return isinstance(head, nn.Linear) and getattr(model, "base_model", model) is not model

    def _check_split_heads(self) -> bool:
        model: Any = self.pretrained_model
        head, base = model.get_output_embeddings(), model.base_model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                ids = torch.arange(min(7, self.vocab_size), device=self.device).unsqueeze(0) % self.vocab_size
                mask = torch.ones_like(ids)
                full = model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True)
                hidden = base(input_ids=ids, attention_mask=mask, use_cache=False)[0]
                split = head(hidden).float()
            # the value head reads hidden_states[-1] (as TRL does): the backbone's output must be that too
            same_hidden = hidden.shape == full.hidden_states[-1].shape and torch.allclose(
                hidden, full.hidden_states[-1], rtol=1e-4, atol=1e-4
            )
            return same_hidden and full.logits.shape == split.shape and torch.allclose(
                full.logits.float(), split, rtol=1e-4, atol=1e-4
            )
        # An unusual model: its forward takes no such arguments or returns no logits/hidden_states (TypeError,
        # AttributeError, transformers' ValueError), or its head does not fit the backbone's output
        # (RuntimeError): the plain forward serves it.
        except (TypeError, AttributeError, ValueError, RuntimeError):
            return False
        finally:
            model.train(was_training)


def _switch(name: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be True, False or None (detect), got {value!r}.")
    return value


class AutoModelForCausalLMWithValueHead(CausalLMWithValueHead):
    """TRL 0.11's name and surface for a causal LM with a value head (see ``CausalLMWithValueHead``)."""
