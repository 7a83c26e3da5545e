"""One code path for any causal LM: tiny GPT-2, Llama, Qwen2 and GPT-NeoX, with and without gradient
checkpointing (which must really recompute in step()'s backward, and still leave the first ratio exactly 1)."""

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

import rlcode.rlhf.ppo_trainer as ppo_trainer_module
from rlcode.rlhf import PPOConfig, PPOTrainer
from rlcode.rlhf.value_head import CausalLMWithValueHead

from .conftest import make_batch

COMMON = dict(vocab_size=100, bos_token_id=1, eos_token_id=2, pad_token_id=0)
DECODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=2, max_position_embeddings=64, attention_dropout=0.1)
FAMILIES = {  # dropout on wherever the family has it: step() must switch it off
    "gpt2": lambda: GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=2, **COMMON),
    "llama": lambda: LlamaConfig(**DECODER, **COMMON),
    "qwen2": lambda: Qwen2Config(**DECODER, **COMMON),
    "gpt_neox": lambda: GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, max_position_embeddings=64, hidden_dropout=0.1,
                                      attention_dropout=0.1, **COMMON),
}
LORA_TARGETS = {"gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
                "gpt_neox": ["query_key_value"]}


def family_model(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return CausalLMWithValueHead.from_config(FAMILIES[name](), **kwargs)


def recorded_updates(monkeypatch):
    results = []
    original = ppo_trainer_module.ppo_update

    def recording(*args, **kwargs):
        results.append(original(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(ppo_trainer_module, "ppo_update", recording)
    return results


def counted_linear_calls(model):
    """How often a Linear/Conv1D ran: a checkpointed layer runs its Linears again in the backward."""
    calls = [0]
    for module in model.modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def one_step(model, monkeypatch):
    updates = recorded_updates(monkeypatch)
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, ppo_epochs=1, learning_rate=1e-3), model)
    stats = trainer.step(*make_batch(4, seed=5))
    first = updates[-1].ratios[0]
    return trainer, stats, first


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_builds_splits_its_head_and_steps_with_first_ratio_one(name, monkeypatch):
    model = family_model(name)
    assert model.split_heads  # each is lm_head(base_model(x)) with a Linear head
    assert model.tied_inputs == (name == "gpt2")  # only GPT-2 ties its embedding and head by default here
    _, stats, first = one_step(model, monkeypatch)
    assert first.numel() > 0 and torch.equal(first, torch.ones_like(first))
    assert stats["objective/kl"] == 0.0


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("split_heads", [True, False])
def test_gradient_checkpointing_recomputes_in_step_and_keeps_the_first_ratio_one(name, split_heads, monkeypatch):
    plain = family_model(name, split_heads=split_heads)
    checkpointed = family_model(name, split_heads=split_heads)
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.is_gradient_checkpointing and not plain.is_gradient_checkpointing
    plain_calls, checkpointed_calls = counted_linear_calls(plain), counted_linear_calls(checkpointed)
    plain_trainer, plain_stats, _ = one_step(plain, monkeypatch)
    trainer, stats, first = one_step(checkpointed, monkeypatch)
    # 2 training minibatches each recompute every layer once in the backward: more Linear calls than without
    assert checkpointed_calls[0] > plain_calls[0]
    assert torch.equal(first, torch.ones_like(first)) and stats["objective/kl"] == 0.0
    # the checkpointed update is the plain one (recomputation changes where activations live, not values)
    for (key, a), b in zip(plain_trainer.model.state_dict().items(), trainer.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=key)
    assert not any(m.training for m in checkpointed.modules())  # step() leaves the modes it found
    assert checkpointed.pretrained_model.config.to_dict().get("attention_dropout", 0.1) == 0.1
    checkpointed.gradient_checkpointing_disable()
    assert not checkpointed.is_gradient_checkpointing


def test_gradient_checkpointing_reruns_each_layer_once_per_training_minibatch_on_gpt2(monkeypatch):
    """The exact count on each layer's first Linear (torch's recompute may stop before a layer's last op)."""
    counts = {}
    for label in ("plain", "checkpointed"):
        model = family_model("gpt2")
        if label == "checkpointed":
            model.gradient_checkpointing_enable()
        counts[label] = [0]
        for block in model.pretrained_model.transformer.h:
            block.attn.c_attn.register_forward_hook(lambda *_, c=counts[label]: c.__setitem__(0, c[0] + 1))
        one_step(model, monkeypatch)
    assert counts["checkpointed"][0] - counts["plain"][0] == 2 * 2  # 2 minibatches x 2 layers, 1 epoch


def test_layer_dropout_probabilities_are_zeroed_only_during_step():
    from transformers import OPTConfig

    torch.manual_seed(0)
    model = CausalLMWithValueHead.from_config(OPTConfig(
        vocab_size=100, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=64, word_embed_proj_dim=32, dropout=0.3, layerdrop=0.5, **{"pad_token_id": 0}))
    model.gradient_checkpointing_enable()
    ids = torch.randint(3, 100, (2, 6))
    with torch.no_grad():
        expected = model.eval()(ids)[0]
    flagged = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    with model.training_forwards():
        assert all(m.training for m in flagged) and all(getattr(m, "dropout", 0.0) == 0.0 for m in flagged)
        logits, _ = model.selected_outputs(ids, torch.ones_like(ids), torch.ones_like(ids, dtype=torch.bool))
    torch.testing.assert_close(logits, expected.reshape(-1, expected.shape[-1]), rtol=1e-5, atol=1e-5)
    assert any(getattr(m, "dropout", None) == 0.3 for m in flagged)  # restored
