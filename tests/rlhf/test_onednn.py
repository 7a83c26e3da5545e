"""oneDNN linear layers (rlcode.rlhf.fast.onednn): equal to F.linear to float rounding, forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlcode.rlhf import PPOConfig, PPOTrainer
from rlcode.rlhf.fast.onednn import available, linear, onednn_linears, raw_linear

from .conftest import make_batch, make_model

pytestmark = pytest.mark.skipif(not available(), reason="this torch has no oneDNN float32 linear operator")


def test_the_operator_is_there_on_x86_builds():
    assert torch.backends.mkldnn.is_available() and available()


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("weight_trains", [True, False])
def test_linear_equals_f_linear_in_values_and_gradients(shape, with_bias, weight_trains):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator, requires_grad=True)
    weight = torch.randn(4, 5, generator=generator, requires_grad=weight_trains)
    bias = torch.randn(4, generator=generator, requires_grad=True) if with_bias else None
    upstream = torch.randn(*shape[:-1], 4, generator=generator)
    leaves = [t for t in (x, weight, bias) if t is not None and t.requires_grad]

    expected = nn.functional.linear(x, weight, bias)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), leaves)
    with onednn_linears():
        got = linear(x, weight, bias)
        got_grads = torch.autograd.grad((got * upstream).sum(), leaves)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_outside_a_block_it_is_plain_f_linear():
    x, weight = torch.randn(3, 5), torch.randn(4, 5)
    assert torch.equal(raw_linear(x, weight), nn.functional.linear(x, weight))
    assert torch.equal(linear(x.double(), weight.double()), nn.functional.linear(x.double(), weight.double()))


def test_small_layers_stay_on_f_linear():
    model = make_model().eval()  # every weight of this tiny GPT-2 is below MIN_WEIGHT_ELEMENTS
    with onednn_linears(model) as switched:
        assert switched == 0


def test_the_block_switches_linear_and_conv1d_layers_and_restores_them(monkeypatch):
    from rlcode.rlhf.fast import onednn

    monkeypatch.setattr(onednn, "MIN_WEIGHT_ELEMENTS", 0)
    model = make_model().eval()  # GPT-2: Conv1D projections, a Linear LM head, a Linear value head
    ids = torch.arange(12).reshape(2, 6) % model.vocab_size
    with torch.no_grad():
        expected_logits, expected_values = model(ids)
        with onednn_linears(model, model) as switched:  # a module reachable twice is switched once
            logits, values = model(ids)
            layers = [m for m in model.modules() if "forward" in m.__dict__]
    assert switched == len(layers) > 4
    assert not any("forward" in m.__dict__ for m in model.modules())
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, expected_values, rtol=1e-5, atol=1e-5)


def test_a_step_with_onednn_equals_one_without_to_float_rounding(monkeypatch):
    from rlcode.rlhf.fast import onednn

    monkeypatch.setattr(onednn, "MIN_WEIGHT_ELEMENTS", 0)
    batch = make_batch(4, seed=2)
    results = []
    for use_onednn in (True, False):
        trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, learning_rate=1e-3, onednn_linear=use_onednn),
                             make_model())
        stats = trainer.step(*batch)
        assert float(stats["ppo/policy/ratio"].max()) >= 1.0  # sanity: statistics came back
        results.append((stats, [p.detach().clone() for p in trainer.model.parameters()]))
    (on, on_weights), (off, off_weights) = results
    for key in ("objective/kl", "ppo/loss/policy", "ppo/loss/value", "ppo/policy/approxkl", "ppo/val/mean"):
        assert float(on[key]) == pytest.approx(float(off[key]), rel=1e-4, abs=1e-6), key
    # Adam divides by the gradient's running RMS, so a float-rounding difference in a near-zero gradient can
    # move a weight by a sizeable fraction of the learning rate (1e-3): compare at a tenth of it
    for a, b in zip(on_weights, off_weights):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
