"""The trl / trl.core names a TRL 0.11 script imports, each against a plain computation."""

import numpy as np
import pytest
import torch

import rlcode.rlhf as rlhf
from rlcode.rlhf import (
    LengthSampler,
    create_reference_model,
    masked_mean,
    masked_var,
    masked_whiten,
    respond_to_batch,
)

from .conftest import make_model


def test_a_trl_script_finds_its_names_in_rlcode_rlhf():
    for name in ("AutoModelForCausalLMWithValueHead", "PPOConfig", "PPOTrainer", "create_reference_model",
                 "LengthSampler", "respond_to_batch", "set_seed", "masked_mean", "masked_var", "masked_whiten",
                 "logprobs_from_logits", "entropy_from_logits", "flatten_dict", "stack_dicts"):
        assert callable(getattr(rlhf, name)), name


def test_length_sampler_draws_from_min_to_max_exclusive_with_numpys_global_rng():
    sampler = LengthSampler(4, 8)
    np.random.seed(5)
    draws = [sampler() for _ in range(400)]
    assert set(draws) == {4, 5, 6, 7}
    np.random.seed(5)
    assert [sampler() for _ in range(400)] == draws  # the global RNG, so set_seed makes it repeat
    with pytest.raises(ValueError, match="exclusive"):
        LengthSampler(3, 3)


def test_masked_statistics_match_a_loop_over_the_kept_values():
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.float)
    kept = [float(v) for v, m in zip(values.flatten(), mask.flatten()) if m]
    mean = sum(kept) / len(kept)
    variance = sum((x - mean) ** 2 for x in kept) / (len(kept) - 1)
    assert float(masked_mean(values, mask)) == pytest.approx(mean)
    assert masked_mean(values, mask, axis=1).tolist() == pytest.approx([2.5, 19 / 3])
    assert float(masked_var(values, mask)) == pytest.approx(variance)
    assert float(masked_var(values, mask, unbiased=False)) == pytest.approx(variance * (len(kept) - 1) / len(kept))
    whitened = masked_whiten(values, mask)
    assert whitened[1, 0] == pytest.approx((5.0 - mean) / (variance + 1e-8) ** 0.5)
    assert masked_whiten(values, mask, shift_mean=False)[1, 0] == pytest.approx(whitened[1, 0] + mean)


@pytest.mark.parametrize("layers", [0, 1])
def test_shared_reference_layers_are_the_policys_own_frozen_tensors(layers):
    policy = make_model()
    reference = create_reference_model(policy, num_shared_layers=layers)
    ref_params = dict(reference.named_parameters(remove_duplicate=False))
    names = [n for n, _ in policy.named_parameters()]
    first_unshared = next(i for i, n in enumerate(names) if f"transformer.h.{layers}." in n)
    for index, (name, parameter) in enumerate(policy.named_parameters()):
        if index < first_unshared:  # embeddings and layers below `layers`: one tensor, frozen in both
            assert ref_params[name] is parameter and not parameter.requires_grad, name
        else:
            assert ref_params[name] is not parameter and parameter.requires_grad, name
            assert torch.equal(ref_params[name], parameter) and not ref_params[name].requires_grad
    assert not reference.training
    tied = reference.pretrained_model.lm_head.weight  # GPT-2 ties the LM head to the embedding
    assert tied is reference.pretrained_model.transformer.wte.weight


def test_reference_without_shared_layers_is_a_full_frozen_copy_and_bad_patterns_fail():
    policy = make_model()
    reference = create_reference_model(policy)
    assert all(p is not q for p, q in zip(policy.parameters(), reference.parameters()))
    assert all(p.requires_grad for p in policy.parameters()) and not any(p.requires_grad for p in reference.parameters())
    same = create_reference_model(policy, num_shared_layers=1, pattern="transformer.h.{layer}")
    assert same.pretrained_model.transformer.h[0].attn.c_attn.weight is policy.pretrained_model.transformer.h[0].attn.c_attn.weight
    with pytest.raises(ValueError, match="model.layers"):
        create_reference_model(make_model(), num_shared_layers=1, pattern="model.layers.{layer}")
    with pytest.raises(ValueError, match="layer 2"):  # the tiny GPT-2 has layers 0 and 1 only
        create_reference_model(make_model(), num_shared_layers=2)


def test_respond_to_batch_samples_txt_len_tokens_and_top_k_1_is_greedy():
    model = make_model(summary_dropout_prob=0.0).eval()
    queries = torch.tensor([[5, 6, 7], [8, 9, 10]])
    torch.manual_seed(0)
    sampled = respond_to_batch(model, queries, txt_len=4)
    assert sampled.shape == (2, 4) and sampled.dtype == torch.long
    greedy = respond_to_batch(model, queries, txt_len=4, top_k=1)
    expected = queries
    for _ in range(4):  # greedy decoding written out: argmax of the last position's logits
        logits = model.pretrained_model(expected).logits[:, -1]
        expected = torch.cat([expected, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy, expected[:, -4:])
    nucleus = respond_to_batch(model, queries, txt_len=4, top_p=1e-6)  # only the most likely token survives
    assert torch.equal(nucleus, expected[:, -4:])
