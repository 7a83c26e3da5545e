"""Plain LoRA layers without peft's bookkeeping (rlcode.rlhf.fast.lora): bit-identical to peft's forward."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from rlcode.rlhf.fast.lora import lean_lora_layers


def lora_llama(dropout: float = 0.0):
    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj", "v_proj", "up_proj"],
                        init_lora_weights=False)  # random B: the adapters change the output
    return get_peft_model(base, config).eval()


def test_outputs_and_gradients_are_bit_identical_to_peft_with_adapters_on_and_off():
    model = lora_llama()
    ids = torch.arange(10).reshape(2, 5)
    trained = [p for p in model.parameters() if p.requires_grad]

    def run():
        logits = model(input_ids=ids).logits
        grads = torch.autograd.grad(logits.square().mean(), trained)
        with model.disable_adapter(), torch.no_grad():
            plain = model(input_ids=ids).logits
        return logits.detach(), grads, plain

    expected = run()
    with lean_lora_layers(model) as switched:
        got = run()
    assert switched == 2 * 3  # two layers, three adapted projections each
    assert torch.equal(got[0], expected[0]) and torch.equal(got[2], expected[2])
    assert not torch.equal(expected[0], expected[2])  # the adapters matter in this check
    assert all(torch.equal(a, b) for a, b in zip(got[1], expected[1]))
    assert not any("forward" in m.__dict__ for m in model.modules())  # restored


def test_layers_with_dropout_keep_peft_forward():
    with lean_lora_layers(lora_llama(dropout=0.1)) as switched:
        assert switched == 0
