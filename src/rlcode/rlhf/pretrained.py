"""``from_pretrained``/``save_pretrained`` for a causal LM with a value head, pickle-free.

Saving follows TRL 0.11's layout: the head's ``v_head.summary.*`` tensors go inside the LM's
``model.safetensors`` (or its shards), so TRL reads rlcode's directories and the other way round. A
PEFT model saves its adapter with peft and the head in ``value_head.safetensors`` (TRL pickles it in
``pytorch_model.bin``). Loading finds the head in any pickle-free layout either library writes (see
``_value_head_sources``), in a directory or in the Hugging Face cache, and says so when there is none.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rlcode.rlhf.peft_support import is_peft_model, require_peft, with_adapters

HEAD_FILE, HEAD_CONFIG = "value_head.safetensors", "value_head.json"
SAFE_WEIGHTS, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_PICKLE = "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"
HUB_KWARGS = ("cache_dir", "revision", "subfolder", "token", "local_files_only", "force_download", "proxies")
Finder = Callable[..., "Path | None"]


def file_finder(source: str | Path, kwargs: dict[str, Any]) -> Finder:
    """``find(name, cached_only=False)``: that file of a directory or hub repo (from the cache when
    offline or ``cached_only``), or None. Through transformers' ``cached_file``, as its loading does."""
    from transformers.utils import cached_file

    hub = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}

    def find(name: str, cached_only: bool = False) -> Path | None:
        options = hub | ({"local_files_only": True} if cached_only else {})
        try:
            path = cached_file(str(source), name, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False, **options)
        except (OSError, ValueError):  # not a directory and not a valid repo id, gated, ...
            return None
        return Path(path) if path else None

    return find


def refuse_pickle_only(find: Finder, where: str, safe: str = SAFE_WEIGHTS, pickles: tuple[str, ...] = PICKLES) -> None:
    """Refuse, before anything loads, weights that exist only as pickle (rlcode never calls torch.load)."""
    if find(safe, cached_only=True) or (safe == SAFE_WEIGHTS and find(SAFE_INDEX, cached_only=True)):
        return
    pickled = [name for name in pickles if find(name, cached_only=True)]
    if pickled:
        raise ValueError(
            f"{where} holds its weights only as pickle ({pickled[0]}) and rlcode never unpickles; convert them once "
            "where you trust the file: AutoModelForCausalLM.from_pretrained(path).save_pretrained(path) (for a PEFT "
            "adapter: PeftModel.from_pretrained(base, path).save_pretrained(path)) writes safetensors."
        )


def _head_state(tensors: dict[str, torch.Tensor], bare: bool) -> dict[str, torch.Tensor]:
    """``summary.weight``/``summary.bias`` from ``v_head.*`` keys, or (a separate head file) bare keys."""
    state = {k.removeprefix("v_head."): v for k, v in tensors.items() if k.startswith("v_head.")}
    if not state and bare:
        state = {(f"summary.{k}" if k in ("weight", "bias") else k): v for k, v in tensors.items()}
    return state


def _read_head(path: Path, bare: bool) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = [k for k in handle.keys() if bare or k.startswith("v_head.")]
        return _head_state({k: handle.get_tensor(k) for k in keys}, bare)


def _value_head_sources(find: Finder) -> dict[str, dict[str, torch.Tensor]]:
    """Every saved head, by file: rlcode's ``value_head.safetensors`` (``v_head.*``, ``summary.*`` or bare
    ``weight``/``bias`` keys), and ``v_head.*`` keys in ``model.safetensors`` or in the shards that
    ``model.safetensors.index.json`` maps them to (TRL's layout)."""
    found = {}
    head_file = find(HEAD_FILE)
    if head_file is not None:
        found[str(head_file)] = _read_head(head_file, bare=True)
    weights = find(SAFE_WEIGHTS)
    if weights is not None and (state := _read_head(weights, bare=False)):
        found[str(weights)] = state
    index = find(SAFE_INDEX)
    if index is not None:
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        state = {}
        for shard in sorted({file for key, file in weight_map.items() if key.startswith("v_head.")}):
            path = find(shard)
            if path is None:
                raise ValueError(f"{index} maps v_head.* to {shard}, which is missing; the value head cannot be read.")
            state |= _read_head(path, bare=False)
        if state:
            found[str(index)] = state
    return found


def load_value_head(model: Any, find: Finder, where: str, gguf: bool = False) -> None:
    """Load the saved head into ``model.v_head``, or warn (one line) that it is newly initialised."""
    if gguf:
        warnings.warn(f"{where} was loaded from a GGUF file, which holds no value head: the value head is newly "
                      "initialised.", UserWarning, stacklevel=4)
        return
    sources = _value_head_sources(find)
    if not sources:
        pickled = [name for name in PICKLES if find(name, cached_only=True)]
        unread = f" ({pickled[0]} was not read: rlcode never unpickles)" if pickled else ""
        warnings.warn(
            f"no value head in {where} (looked for {HEAD_FILE}, v_head.* in {SAFE_WEIGHTS} and in the shards of "
            f"{SAFE_INDEX}){unread}: the value head is newly initialised.", UserWarning, stacklevel=4,
        )
        return
    (first, state), *others = sources.items()
    for other, other_state in others:
        if state.keys() != other_state.keys() or not all(torch.equal(state[k], other_state[k]) for k in state):
            raise ValueError(f"{where} holds two different value heads, in {first} and in {other}; remove one.")
    try:
        model.v_head.load_state_dict(state)
    except RuntimeError as error:
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        raise ValueError(f"the value head in {first} ({shapes}) does not fit this model's head "
                         f"(Linear({model.v_head.summary.in_features}, 1)): {error}".replace("\n", " ")) from error


def saved_dropout(find: Finder) -> float | None:
    path = find(HEAD_CONFIG)
    return None if path is None else float(json.loads(path.read_text())["summary_dropout_prob"])


def load_language_model(source: Any, model_args: tuple[Any, ...], kwargs: dict[str, Any], peft_config: Any,
                        is_trainable: bool) -> tuple[Any, Finder | None, str]:
    """The LM (wrapped by peft when asked or when ``source`` is an adapter), how to find files beside it,
    and where that is in words. ``kwargs`` are ``AutoModelForCausalLM.from_pretrained``'s."""
    from torch import nn
    from transformers import AutoModelForCausalLM

    if isinstance(source, nn.Module):
        if is_peft_model(source) and peft_config is not None:
            raise ValueError("the model is already a PeftModel; drop peft_config (its adapters are used as they are).")
        return (source if peft_config is None else with_adapters(source, peft_config)), None, type(source).__name__
    if not isinstance(source, (str, Path)):
        raise TypeError(f"from_pretrained takes a path, a hub id or a transformers model, got {type(source).__name__}.")
    if kwargs.get("use_safetensors") is False:
        raise ValueError("use_safetensors=False: rlcode loads safetensors only (it never unpickles).")
    find = file_finder(source, kwargs)
    where = f"'{source}'"
    if kwargs.get("gguf_file") is None:
        kwargs.setdefault("use_safetensors", True)  # transformers then refuses a pickle-only repo it downloads
    if find(ADAPTER_CONFIG) is not None:  # a saved PEFT adapter: load its base, then the adapter (as TRL)
        peft = require_peft()
        refuse_pickle_only(find, where, ADAPTER_WEIGHTS, (ADAPTER_PICKLE,))
        if find(HEAD_FILE) is None and (pickled := find(PICKLES[0], cached_only=True)) is not None:
            raise ValueError(  # TRL 0.11 pickles a PEFT model's head in pytorch_model.bin
                f"{where} is a PEFT adapter whose value head is saved only as pickle ({pickled.name}, TRL's layout) "
                "and rlcode never unpickles; convert it once where you trust the file: save_file({k: v for k, v in "
                f"torch.load('{pickled.name}', weights_only=True).items() if k.startswith('v_head.')}}, "
                f"'{HEAD_FILE}') (safetensors.torch.save_file)."
            )
        if peft_config is not None:
            warnings.warn(f"peft_config ignored: {where} holds a trained adapter ({ADAPTER_CONFIG}).", stacklevel=4)
        hub = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        base_name = peft.PeftConfig.from_pretrained(str(source), **hub).base_model_name_or_path
        refuse_pickle_only(file_finder(base_name, kwargs), f"'{base_name}'")
        base = AutoModelForCausalLM.from_pretrained(base_name, *model_args, **kwargs)
        model = peft.PeftModel.from_pretrained(base, str(source), is_trainable=is_trainable, **hub)
        return model, find, where
    if kwargs.get("gguf_file") is None:
        refuse_pickle_only(find, where)
    model = AutoModelForCausalLM.from_pretrained(source, *model_args, **kwargs)
    if kwargs.get("gguf_file") is not None:  # saveable, and SmolLM2's tied head also on transformers 4.46
        from rlcode.rlhf.loading import finish_gguf_load

        model = finish_gguf_load(model, find(kwargs["gguf_file"]))
    return (model if peft_config is None else with_adapters(model, peft_config)), find, where


def save_with_value_head(model: Any, directory: str | Path, *args: Any, **kwargs: Any) -> None:
    """The LM through its ``save_pretrained`` with ``v_head.*`` inside its weights (TRL's layout), or for
    a PEFT model the adapter plus ``value_head.safetensors``; and ``value_head.json`` (the head's dropout).

    No ``safe_serialization`` default is passed: safetensors is what transformers writes from 4.35 on,
    and 5.x no longer has the argument (an unknown kwarg goes on to ``create_repo`` under ``push_to_hub``).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    head = {f"v_head.{k}": v.detach().cpu().contiguous() for k, v in model.v_head.state_dict().items()}
    state = kwargs.pop("state_dict", None)  # TRL's layout (the LM's keys and v_head.*) when given
    if is_peft_model(model.pretrained_model):  # peft saves the adapter only (as TRL, the state_dict is dropped)
        model.pretrained_model.save_pretrained(directory, *args, **kwargs)
        save_file(head, str(directory / HEAD_FILE), metadata={"format": "pt"})
    else:
        lm_state = model.pretrained_model.state_dict() if state is None else state
        lm_state = {k: v for k, v in lm_state.items() if not k.startswith("v_head.")}
        model.pretrained_model.save_pretrained(directory, *args, state_dict=lm_state | head, **kwargs)
    (directory / HEAD_CONFIG).write_text(json.dumps({"summary_dropout_prob": model.summary_dropout_prob}))


def from_pretrained(cls: Any, source: Any, model_args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``cls.from_pretrained`` (see ``CausalLMWithValueHead.from_pretrained``): TRL 0.11's own kwargs are taken
    out here, the rest go to ``AutoModelForCausalLM.from_pretrained``."""
    options = {k: kwargs.pop(k) for k in ("summary_dropout_prob", "split_heads", "tied_inputs",
                                           "v_head_init_strategy", "v_head_initializer_range") if k in kwargs}
    peft_config, is_trainable = kwargs.pop("peft_config", None), kwargs.pop("is_trainable", False)
    checkpointing = kwargs.pop("use_gradient_checkpointing", False)  # TRL's prepare_model_for_kbit_training args
    checkpointing_kwargs = kwargs.pop("gradient_checkpointing_kwargs", None)
    if kwargs.pop("reward_adapter", None) is not None:
        raise ValueError("reward_adapter (TRL's reward model as a second adapter) is not supported by rlcode; "
                         "score the responses with your reward model and pass the scores to step().")
    kwargs.pop("reward_adapter_name", None)
    if (kwargs.get("load_in_8bit") or kwargs.get("load_in_4bit")) and not torch.cuda.is_available():
        raise ValueError("load_in_8bit/load_in_4bit need bitsandbytes and a CUDA GPU, and there is none; "
                         "load in full or half precision (torch_dtype=torch.bfloat16) on the CPU.")
    model, find, where = load_language_model(source, model_args, kwargs, peft_config, is_trainable)
    if find is not None and options.get("summary_dropout_prob") is None:
        options["summary_dropout_prob"] = saved_dropout(find)
    wrapped = cls(model, **options)
    if find is not None:
        load_value_head(wrapped, find, where, gguf=kwargs.get("gguf_file") is not None)
    if checkpointing:
        wrapped.gradient_checkpointing_enable(checkpointing_kwargs)
    return wrapped
