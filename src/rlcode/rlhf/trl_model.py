"""AutoModelForCausalLMWithValueHead: TRL 0.11's class name, forward and state-dict layout over
``CausalLMWithValueHead`` (construction, loading, saving, PEFT and the trainer's forwards are shared)."""

from __future__ import annotations

from typing import Any

import torch

from rlcode.rlhf.value_head import CausalLMWithValueHead, language_model


class AutoModelForCausalLMWithValueHead(CausalLMWithValueHead):
    """TRL 0.11's name and surface: ``forward`` returns ``(lm_logits, loss, value)`` and ``state_dict`` uses
    TRL's layout (the LM's own keys, no ``pretrained_model.`` prefix, plus ``v_head.summary.*``).

    Everything else is ``CausalLMWithValueHead``'s, so ``PPOTrainer`` takes either class.
    """

    is_loaded_in_8bit = False
    is_loaded_in_4bit = False
    is_sequential_parallel = False  # TRL's flag for a model split over devices (not supported here)
    supports_rm_adapter = False  # TRL's reward adapter is refused by from_pretrained

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
