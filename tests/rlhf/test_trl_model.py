"""AutoModelForCausalLMWithValueHead: TRL 0.11's constructor, forward, state-dict layout and loading."""

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM

from rlcode.rlhf.value_head import AutoModelForCausalLMWithValueHead, CausalLMWithValueHead

from .conftest import tiny_config


def tiny_lm(seed=0):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config()).eval()


def saved_lm(directory, seed=0, **save_kwargs):
    """A directory with a plain transformers LM (no value head) saved in it."""
    lm = tiny_lm(seed)
    lm.save_pretrained(directory, **save_kwargs)
    return lm


def quiet_load(cls, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a found head loads without a warning
        return cls.from_pretrained(*args, **kwargs)


def test_constructor_takes_trl_kwargs_and_normal_init_draws_like_torch():
    lm = tiny_lm()
    torch.manual_seed(3)
    model = AutoModelForCausalLMWithValueHead(lm, summary_dropout_prob=0.3, v_head_init_strategy="normal",
                                              v_head_initializer_range=0.5)
    torch.manual_seed(3)
    nn.Linear(32, 1)  # the head's default init draws first, then the normal redraw (as TRL)
    expected = torch.empty(1, 32).normal_(0.0, 0.5)
    assert torch.equal(model.v_head.summary.weight, expected)
    assert torch.equal(model.v_head.summary.bias, torch.zeros(1))
    assert model.v_head.dropout.p == 0.3 and model.pretrained_model is lm
    torch.manual_seed(3)
    default = AutoModelForCausalLMWithValueHead(lm)
    torch.manual_seed(3)
    assert torch.equal(default.v_head.summary.weight, nn.Linear(32, 1).weight)
    with pytest.raises(ValueError, match="v_head_init_strategy"):
        AutoModelForCausalLMWithValueHead(lm, v_head_init_strategy="xavier")


def test_forward_returns_logits_loss_and_value_like_trl():
    model = AutoModelForCausalLMWithValueHead(tiny_lm()).eval()
    ids = torch.randint(3, 50, (2, 6))
    logits, loss, value = model(ids, labels=ids)
    assert logits.dtype == torch.float32 and logits.shape == (2, 6, 50) and value.shape == (2, 6)
    expected_loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 50), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, expected_loss)
    hidden = model.pretrained_model(ids, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(value, hidden @ model.v_head.summary.weight[0] + model.v_head.summary.bias)
    assert model(ids)[1] is None  # no labels, no loss
    *_, cache = model(ids[:, :5], use_cache=True, return_past_key_values=True)
    next_logits, _, next_value = model(ids[:, 5:], past_key_values=cache, use_cache=True)
    torch.testing.assert_close(next_logits[:, 0], logits[:, 5], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(next_value[:, 0], value[:, 5], rtol=1e-5, atol=1e-5)


def test_state_dict_is_trl_layout_and_both_layouts_load():
    model = AutoModelForCausalLMWithValueHead(tiny_lm(0))
    state = model.state_dict()
    assert set(state) == set(model.pretrained_model.state_dict()) | {"v_head.summary.weight", "v_head.summary.bias"}
    other = AutoModelForCausalLMWithValueHead(tiny_lm(1))
    other.load_state_dict(state)
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key]), key
    prefixed = nn.Module.state_dict(AutoModelForCausalLMWithValueHead(tiny_lm(2)))
    assert "pretrained_model.transformer.wte.weight" in prefixed
    other.load_state_dict(prefixed)
    assert torch.equal(other.pretrained_model.transformer.wte.weight, prefixed["pretrained_model.transformer.wte.weight"])
    holder = nn.ModuleDict({"policy": model})  # as a submodule the usual prefixed keys come back
    assert "policy.pretrained_model.transformer.wte.weight" in holder.state_dict()
    model.post_init({"v_head.summary.weight": torch.ones(1, 32), "v_head.summary.bias": torch.ones(1)})
    assert torch.equal(model.v_head.summary.weight, torch.ones(1, 32))


def test_save_pretrained_writes_trl_layout_that_both_classes_load(tmp_path):
    model = AutoModelForCausalLMWithValueHead(tiny_lm(), summary_dropout_prob=0.0, v_head_init_strategy="normal")
    model.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    weights = load_file(str(tmp_path / "model.safetensors"))  # where TRL 0.11 reads the head from
    assert torch.equal(weights["v_head.summary.weight"], model.v_head.summary.weight)
    for cls in (AutoModelForCausalLMWithValueHead, CausalLMWithValueHead):
        loaded = quiet_load(cls, tmp_path)
        assert loaded.summary_dropout_prob == 0.0
        assert torch.equal(loaded.v_head.summary.weight, model.v_head.summary.weight)
        assert torch.equal(loaded.v_head.summary.bias, model.v_head.summary.bias)
        ids = torch.randint(3, 50, (2, 5))
        torch.testing.assert_close(loaded.eval().selected_outputs(ids, torch.ones_like(ids), ids > 0)[1],
                                   model.eval().selected_outputs(ids, torch.ones_like(ids), ids > 0)[1], rtol=0, atol=0)


def test_head_is_found_in_the_shard_the_index_names(tmp_path):
    model = AutoModelForCausalLMWithValueHead(tiny_lm(), v_head_init_strategy="normal")
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and not (tmp_path / "model.safetensors").exists()
    loaded = quiet_load(CausalLMWithValueHead, tmp_path)
    assert torch.equal(loaded.v_head.summary.weight, model.v_head.summary.weight)


@pytest.mark.parametrize("keys", [("weight", "bias"), ("summary.weight", "summary.bias"),
                                  ("v_head.summary.weight", "v_head.summary.bias")])
def test_a_separate_head_file_loads_with_any_key_naming(tmp_path, keys):
    saved_lm(tmp_path)
    weight, bias = torch.randn(1, 32), torch.randn(1)
    save_file({keys[0]: weight, keys[1]: bias}, str(tmp_path / "value_head.safetensors"))
    loaded = quiet_load(AutoModelForCausalLMWithValueHead, tmp_path)
    assert torch.equal(loaded.v_head.summary.weight, weight) and torch.equal(loaded.v_head.summary.bias, bias)


def test_two_different_heads_are_refused(tmp_path):
    model = AutoModelForCausalLMWithValueHead(tiny_lm(), v_head_init_strategy="normal")
    model.save_pretrained(tmp_path)
    save_file({"weight": torch.zeros(1, 32), "bias": torch.zeros(1)}, str(tmp_path / "value_head.safetensors"))
    with pytest.raises(ValueError, match="two different value heads"):
        AutoModelForCausalLMWithValueHead.from_pretrained(tmp_path)


def test_a_head_of_the_wrong_width_is_refused(tmp_path):
    saved_lm(tmp_path)
    save_file({"weight": torch.zeros(1, 16), "bias": torch.zeros(1)}, str(tmp_path / "value_head.safetensors"))
    with pytest.raises(ValueError, match="does not fit"):
        CausalLMWithValueHead.from_pretrained(tmp_path)


def test_no_head_warns_where_it_looked(tmp_path):
    saved_lm(tmp_path)
    with pytest.warns(UserWarning, match="newly initialised") as record:
        AutoModelForCausalLMWithValueHead.from_pretrained(tmp_path)
    messages = [str(w.message) for w in record if "newly initialised" in str(w.message)]
    assert len(messages) == 1 and str(tmp_path) in messages[0] and "model.safetensors" in messages[0]


def test_a_hub_id_finds_its_head_in_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # nothing can be downloaded here
    snapshot = tmp_path / "models--someone--tiny" / "snapshots" / ("a" * 40)
    model = AutoModelForCausalLMWithValueHead(tiny_lm(), v_head_init_strategy="normal")
    model.save_pretrained(snapshot)
    (tmp_path / "models--someone--tiny" / "refs").mkdir()
    (tmp_path / "models--someone--tiny" / "refs" / "main").write_text("a" * 40)
    loaded = quiet_load(AutoModelForCausalLMWithValueHead, "someone/tiny", cache_dir=str(tmp_path),
                        local_files_only=True)
    assert torch.equal(loaded.v_head.summary.weight, model.v_head.summary.weight)
    (snapshot / "model.safetensors").write_bytes(b"")  # no head: the warning names the repo
    saved_lm(tmp_path / "plain")
    (snapshot / "model.safetensors").write_bytes((tmp_path / "plain" / "model.safetensors").read_bytes())
    with pytest.warns(UserWarning, match="no value head in 'someone/tiny'"):
        AutoModelForCausalLMWithValueHead.from_pretrained("someone/tiny", cache_dir=str(tmp_path),
                                                          local_files_only=True)


def test_pickle_only_checkpoints_are_refused_before_loading(tmp_path, monkeypatch):
    saved_lm(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")  # only its name matters here

    def must_not_load(*args, **kwargs):
        raise AssertionError("transformers must not be asked to load a pickle")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", must_not_load)
    monkeypatch.setattr(torch, "load", must_not_load)
    for cls in (AutoModelForCausalLMWithValueHead, CausalLMWithValueHead):
        with pytest.raises(ValueError, match="only as pickle.*save_pretrained") as error:
            cls.from_pretrained(tmp_path)
        assert "\n" not in str(error.value)


def test_gguf_loads_warn_that_the_head_is_new(tmp_path, monkeypatch):
    lm = tiny_lm()
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: lm)
    with pytest.warns(UserWarning, match="GGUF file, which holds no value head"):
        model = AutoModelForCausalLMWithValueHead.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    assert model.pretrained_model is lm


def test_models_without_an_lm_head_and_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="no language-model head"):
        AutoModelForCausalLMWithValueHead(AutoModel.from_config(tiny_config()))
    with pytest.raises(ValueError, match="reward_adapter"):
        AutoModelForCausalLMWithValueHead.from_pretrained(tiny_lm(), reward_adapter="some/adapter")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            AutoModelForCausalLMWithValueHead.from_pretrained("gpt2", load_in_8bit=True)
    with pytest.raises(TypeError, match="path, a hub id or a transformers model"):
        AutoModelForCausalLMWithValueHead.from_pretrained(3)


def test_a_built_model_passes_through_with_trl_attributes():
    lm = tiny_lm()
    model = AutoModelForCausalLMWithValueHead.from_pretrained(lm, summary_dropout_prob=0.2)
    assert model.pretrained_model is lm and model.v_head.dropout.p == 0.2
    assert not model.is_peft_model and model.current_device == torch.device("cpu")
    assert not model.is_loaded_in_8bit and not model.supports_rm_adapter and not model.is_gradient_checkpointing
    checkpointed = AutoModelForCausalLMWithValueHead.from_pretrained(tiny_lm(), use_gradient_checkpointing=True)
    assert checkpointed.is_gradient_checkpointing  # TRL's kbit-preparation flag, honoured without quantisation
