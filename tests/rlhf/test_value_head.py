import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlcode.rlhf import CausalLMWithValueHead

from .conftest import make_model, tiny_config


def test_forward_returns_logits_and_values_per_position():
    model = make_model().eval()
    ids = torch.randint(0, 50, (3, 6))
    logits, values = model(ids)
    assert logits.shape == (3, 6, 50) and values.shape == (3, 6)
    hidden = model.pretrained_model(ids, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(values, model.v_head.summary(hidden).squeeze(-1))


def test_dropout_is_configurable_and_defaults_to_trl():
    assert isinstance(make_model().v_head.dropout, torch.nn.Dropout)
    assert make_model().v_head.dropout.p == 0.1
    quiet = CausalLMWithValueHead.from_config(tiny_config(), summary_dropout_prob=0.0)
    assert isinstance(quiet.v_head.dropout, torch.nn.Identity)


def test_wraps_an_existing_model_and_passes_generate_through():
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(tiny_config()).eval()
    model = CausalLMWithValueHead(lm)
    assert model.pretrained_model is lm and model.v_head.summary.in_features == 32
    ids = torch.tensor([[5, 6, 7]])
    expected = lm.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0), expected)


def test_save_and_load_keep_the_value_head(tmp_path):
    model = make_model(summary_dropout_prob=0.0)
    with torch.no_grad():
        model.v_head.summary.weight.normal_()
    model.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in names and "value_head.json" in names  # the head is inside (TRL's layout)
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    loaded = CausalLMWithValueHead.from_pretrained(tmp_path)
    assert json.loads((tmp_path / "value_head.json").read_text())["summary_dropout_prob"] == 0.0
    assert loaded.summary_dropout_prob == 0.0
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.randint(0, 50, (2, 5))
    model.eval(), loaded.eval()
    for a, b in zip(model(ids), loaded(ids)):
        assert torch.equal(a, b)


def test_state_dict_names_match_trl():
    keys = set(make_model().state_dict())
    assert {"v_head.summary.weight", "v_head.summary.bias"} <= keys
    assert "pretrained_model.transformer.wte.weight" in keys


def test_frozen_copy_is_detached_and_in_eval():
    model = make_model()
    reference = model.frozen_copy()
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert not torch.equal(next(model.parameters()), next(reference.parameters()))


@pytest.mark.parametrize("split", [True, False])
def test_selected_outputs_equal_the_full_forward(split):
    model = make_model().eval()
    model.split_heads = split
    ids = torch.randint(0, 50, (3, 7))
    attention = torch.ones_like(ids)
    positions = torch.rand(3, 7) > 0.5
    logits, values = model.selected_outputs(ids, attention, positions)
    full_logits, full_values = model(ids, attention)
    torch.testing.assert_close(logits, full_logits[positions], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, full_values[positions], rtol=1e-5, atol=1e-5)
    assert make_model().split_heads  # GPT-2 is lm_head(transformer(x))


def test_construction_from_a_config_and_trl_saved_heads(tmp_path):
    from safetensors.torch import load_file, save_file

    model = CausalLMWithValueHead(tiny_config())
    assert model.pretrained_model.config.n_embd == 32
    # TRL keeps the head inside model.safetensors under v_head.*; such directories load too
    model.pretrained_model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    head = {"v_head.summary.weight": torch.full((1, 32), 0.5), "v_head.summary.bias": torch.tensor([0.25])}
    save_file(state | head, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    loaded = CausalLMWithValueHead.from_pretrained(tmp_path)
    assert torch.equal(loaded.v_head.summary.weight, head["v_head.summary.weight"])
    assert torch.equal(loaded.v_head.summary.bias, head["v_head.summary.bias"])


def test_forward_paths_are_public_switches():
    model = CausalLMWithValueHead.from_config(tiny_config(), split_heads=False, tied_inputs=False)
    assert not model.split_heads and not model.tied_inputs and model._split_heads is False  # no probe ran
    model.split_heads = None  # back to detection: GPT-2 is lm_head(transformer(x))
    assert model.split_heads and model.frozen_copy().split_heads
    with pytest.raises(TypeError, match="True, False or None"):
        model.tied_inputs = 1


def test_split_heads_true_is_refused_for_a_model_without_a_linear_head():
    model = make_model()
    model.pretrained_model.lm_head = torch.nn.Identity()
    with pytest.raises(ValueError, match="split_heads=True needs"):
        model.split_heads = True
    assert not model.split_heads  # detection takes the plain path
