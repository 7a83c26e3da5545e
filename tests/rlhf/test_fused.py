import numpy as np
import torch
from transformers.activations import FastGELUActivation, NewGELUActivation

from rlcode.rlhf import PPOConfig, PPOTrainer
from rlcode.rlhf.fast.fused import FusedTanhGELU, fused_activations

from .conftest import make_batch, make_model


def test_fused_tanh_gelu_equals_the_python_gelus_to_float_rounding():
    x = torch.linspace(-12, 12, 100_001, dtype=torch.float32, requires_grad=True)
    fused = FusedTanhGELU()(x)
    (fused_grad,) = torch.autograd.grad(fused.sum(), x)
    for python_gelu in (NewGELUActivation(), FastGELUActivation()):
        expected = python_gelu(x)
        (expected_grad,) = torch.autograd.grad(expected.sum(), x)
        torch.testing.assert_close(fused, expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(fused_grad, expected_grad, atol=2e-6, rtol=1e-5)  # gradients in [-0.13, 1.13]


def test_fused_activations_swaps_gpt2_gelus_and_restores_them():
    model = make_model().eval()  # dropout-free, so the two forwards are comparable
    originals = [block.mlp.act for block in model.pretrained_model.transformer.h]
    ids = torch.randint(3, 50, (2, 6))
    with torch.no_grad():
        logits, values = model(ids)
        with fused_activations(model) as count:
            assert count == len(originals)
            assert all(isinstance(block.mlp.act, FusedTanhGELU) for block in model.pretrained_model.transformer.h)
            fused_logits, fused_values = model(ids)
    assert [block.mlp.act for block in model.pretrained_model.transformer.h] == originals
    torch.testing.assert_close(fused_logits, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_values, values, atol=1e-5, rtol=1e-5)


def test_step_with_fused_activations_matches_the_python_gelu():
    queries, responses, scores = make_batch(8)
    results = []
    for fused in (False, True):
        trainer = PPOTrainer(PPOConfig(batch_size=8, mini_batch_size=2, learning_rate=1e-3,
                                       fused_activations=fused), make_model())
        stats = [trainer.step(queries, responses, scores) for _ in range(2)]
        assert isinstance(trainer.model.pretrained_model.transformer.h[0].mlp.act, NewGELUActivation)
        results.append((stats, {k: v.clone() for k, v in trainer.model.state_dict().items()}))
    (plain_stats, plain_weights), (fused_stats, fused_weights) = results
    for plain, fused in zip(plain_stats, fused_stats):
        for key, value in plain.items():
            if not key.startswith("time/"):
                np.testing.assert_allclose(fused[key], value, atol=1e-5, rtol=1e-4, err_msg=key)
    # Adam divides by the gradient's scale, so a weight with a ~0 gradient may move by up to the learning
    # rate on rounding alone; a tenth of one Adam step bounds the rounding-level differences.
    for key, value in plain_weights.items():
        torch.testing.assert_close(fused_weights[key], value, atol=1e-4, rtol=0)

