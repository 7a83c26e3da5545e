"""PEFT (LoRA) policies at the memory of one model: the reference is the policy with its adapters disabled."""

import copy
import warnings
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from rlcode.rlhf import PPOConfig, PPOTrainer
from rlcode.rlhf.value_head import AutoModelForCausalLMWithValueHead, CausalLMWithValueHead

from .conftest import assert_same_step, make_batch
from .test_model_families import FAMILIES, LORA_TARGETS, recorded_updates

peft = pytest.importorskip("peft")


def lora_model(name="gpt2", seed=0, cls=CausalLMWithValueHead, **kwargs):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_config(FAMILIES[name]())
    original = copy.deepcopy(lm)  # before peft injects LoRA layers into lm in place
    config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=LORA_TARGETS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft: GPT-2's Conv1D needs fan_in_fan_out (it sets it itself)
        return cls.from_pretrained(lm, peft_config=config, **kwargs), original


def nudge_adapters(model, seed=1):
    """LoRA starts as the identity (B = 0); give B weights so adapters on and off differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


@pytest.mark.parametrize("name", list(LORA_TARGETS))
def test_only_adapters_and_head_train_and_split_forwards_match_with_adapters_on_and_off(name):
    model, base = lora_model(name)
    assert model.is_peft_model
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or n.startswith("v_head.") for n in trained)
    assert {"v_head.summary.weight", "v_head.summary.bias"} <= trained
    nudge_adapters(model)
    model.eval()
    ids = torch.randint(3, 100, (3, 7))
    mask, positions = torch.ones_like(ids), torch.rand(3, 7) > 0.4
    outputs = {}
    for adapters in (True, False):
        with (nullcontext() if adapters else model.adapters_disabled()), torch.no_grad():
            for split in (True, False):
                model.split_heads = split
                outputs[adapters, split] = model.selected_outputs(ids, mask, positions)
    for adapters in (True, False):
        for a, b in zip(outputs[adapters, True], outputs[adapters, False]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(outputs[True, True][0], outputs[False, True][0], atol=1e-3)  # the adapters matter
    # adapters off is the base model: the plain forward of a copy taken before peft touched it
    with torch.no_grad():
        expected = base.eval()(input_ids=ids, attention_mask=mask).logits[positions]
    torch.testing.assert_close(outputs[False, True][0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(LORA_TARGETS))
def test_a_lora_policy_steps_with_no_reference_copy_and_first_ratio_one(name, monkeypatch):
    model, _ = lora_model(name)
    updates = recorded_updates(monkeypatch)
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, ppo_epochs=2, learning_rate=1e-2), model)
    assert trainer.ref_model is None
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    stats = trainer.step(*make_batch(4, seed=2))
    first = updates[0].ratios[0]
    assert torch.equal(first, torch.ones_like(first)) and stats["objective/kl"] == 0.0
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)
    stats = trainer.step(*make_batch(4, seed=3))
    assert stats["objective/kl"] != 0.0  # the adapters moved away from the reference (adapters off)


def test_gradient_checkpointing_gives_lora_gradients_with_frozen_embeddings(monkeypatch):
    plain, _ = lora_model("llama")
    checkpointed, _ = lora_model("llama")
    checkpointed.gradient_checkpointing_enable()
    initial = {n: p.detach().clone() for n, p in checkpointed.named_parameters() if "lora_A" in n}
    for model in (plain, checkpointed):
        PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, ppo_epochs=1, learning_rate=1e-2), model).step(
            *make_batch(4, seed=2))
    reference = dict(plain.named_parameters())
    for name, parameter in checkpointed.named_parameters():
        if name in initial:  # it trained, and as without checkpointing
            assert not torch.equal(parameter, initial[name]), name
            torch.testing.assert_close(parameter, reference[name], rtol=1e-5, atol=1e-6)


def test_unknown_target_modules_are_refused_naming_the_models_modules():
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_config(FAMILIES["llama"]())
    with pytest.raises(ValueError, match=r"\['c_attn'\] name no module.*'q_proj'") as error:
        CausalLMWithValueHead.from_pretrained(lm, peft_config=peft.LoraConfig(target_modules=["c_attn"]))
    assert "\n" not in str(error.value)
    assert not any("lora" in n for n, _ in lm.named_modules())  # refused before peft touched the model
    model, _ = lora_model("llama")
    with pytest.raises(ValueError, match="already a PeftModel"):
        CausalLMWithValueHead.from_pretrained(model.pretrained_model, peft_config=peft.LoraConfig())


def test_a_peft_model_passed_in_is_used_as_it_is():
    model, _ = lora_model("qwen2")
    again = AutoModelForCausalLMWithValueHead.from_pretrained(model.pretrained_model)
    assert again.pretrained_model is model.pretrained_model and again.is_peft_model


def test_saved_adapter_and_head_load_back_from_a_directory(tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(FAMILIES["llama"]()).save_pretrained(tmp_path / "base")
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    model = AutoModelForCausalLMWithValueHead.from_pretrained(tmp_path / "base", peft_config=config,
                                                              v_head_init_strategy="normal")
    nudge_adapters(model)
    model.save_pretrained(tmp_path / "policy")
    names = {p.name for p in (tmp_path / "policy").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "value_head.safetensors"} <= names
    assert not any(name.endswith(".bin") for name in names)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded = AutoModelForCausalLMWithValueHead.from_pretrained(tmp_path / "policy", is_trainable=True)
    assert loaded.is_peft_model and any(p.requires_grad for n, p in loaded.named_parameters() if "lora_" in n)
    ids = torch.randint(3, 100, (2, 6))
    with torch.no_grad():
        for a, b in zip(model.eval()(ids), loaded.eval()(ids)):
            assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("rebuild", [True, False])
def test_a_peft_trainer_resumes_exactly(tmp_path, rebuild):
    batches = [make_batch(4, seed=s) for s in (1, 2, 3)]
    config = PPOConfig(batch_size=4, mini_batch_size=2, learning_rate=1e-2, seed=3)
    trainer = PPOTrainer(config, lora_model("gpt2", cls=AutoModelForCausalLMWithValueHead)[0])
    trainer.step(*batches[0])
    trainer.step(*batches[1])
    trainer.save(tmp_path / "run")
    expected = trainer.step(*batches[2])
    torch.manual_seed(1234)
    np.random.seed(99)
    given = None if rebuild else lora_model("gpt2", seed=7)[0]
    resumed = PPOTrainer.load(tmp_path / "run", model=given)
    assert resumed.ref_model is None and resumed.model.is_peft_model
    assert type(resumed.model) is (AutoModelForCausalLMWithValueHead if rebuild else CausalLMWithValueHead)
    assert_same_step(expected, resumed.step(*batches[2]), trainer.model, resumed.model)


def test_loading_a_peft_checkpoint_into_a_plain_model_is_refused(tmp_path):
    from .conftest import make_model

    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2), lora_model("gpt2")[0])
    trainer.save(tmp_path / "run")
    with pytest.raises(ValueError, match="saved from a PEFT policy"):
        PPOTrainer.load(tmp_path / "run", model=make_model())


def test_a_trl_peft_directory_whose_head_is_pickled_is_refused(tmp_path):
    model, _ = lora_model("llama", cls=AutoModelForCausalLMWithValueHead)
    model.pretrained_model.save_pretrained(tmp_path)  # the adapter, as TRL 0.11 writes it ...
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")  # ... with the head pickled beside it
    with pytest.raises(ValueError, match="value head is saved only as pickle.*value_head.safetensors"):
        AutoModelForCausalLMWithValueHead.from_pretrained(tmp_path)
