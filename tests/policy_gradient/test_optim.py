"""rlcode's Adam and RMSprop against torch.optim's: same numbers, same state_dict format."""

from __future__ import annotations

import copy

import pytest
import torch

from rlcode.policy_gradient.fast.optim import Adam, RMSprop


def _parameters(seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in [(8, 4), (8,), (3, 8)]]


def _run(optimizer, parameters, steps: int = 5) -> None:
    for step in range(steps):
        for index, parameter in enumerate(parameters):
            parameter.grad = torch.sin(parameter.detach() * (step + 1) + index)
        if step == 2:  # a parameter without a gradient is skipped, as torch.optim does
            parameters[1].grad = None
        optimizer.step()


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_matches_torch_optim_bit_for_bit(kind):
    ours, theirs = _parameters(0), _parameters(0)
    if kind == "adam":
        optimizer = Adam(ours, lr=1e-2, eps=1e-5)
        reference = torch.optim.Adam(theirs, lr=1e-2, eps=1e-5, fused=True)  # the same _fused_adam_ kernel
    else:
        optimizer = RMSprop(ours, lr=1e-2, alpha=0.99, eps=1e-5)
        # foreach: the same _foreach_* kernels as ours, so equality holds by construction on any CPU
        reference = torch.optim.RMSprop(theirs, lr=1e-2, alpha=0.99, eps=1e-5, foreach=True)
    _run(optimizer, ours)
    _run(reference, theirs)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    state, reference_state = optimizer.state_dict(), reference.state_dict()
    assert state["state"].keys() == reference_state["state"].keys()
    for index, values in reference_state["state"].items():
        assert values.keys() == state["state"][index].keys()
        for key, value in values.items():
            assert torch.equal(state["state"][index][key], value), (index, key)
    assert state["param_groups"][0]["params"] == reference_state["param_groups"][0]["params"]


def test_state_dict_round_trip_and_loading_torch_optims_state():
    parameters = _parameters(1)
    optimizer = Adam(parameters, lr=1e-2)
    _run(optimizer, parameters)
    torch_state = torch.optim.Adam(_parameters(1), lr=3e-3)
    _run(torch_state, torch_state.param_groups[0]["params"])
    for source in (optimizer.state_dict(), torch_state.state_dict()):
        loaded_optimizer = Adam(_parameters(1), lr=1.0)
        loaded_optimizer.load_state_dict(source)
        assert loaded_optimizer.param_groups[0]["lr"] == source["param_groups"][0]["lr"]
        for index, values in source["state"].items():
            loaded = loaded_optimizer.state[loaded_optimizer.parameters[index]]
            assert all(torch.equal(loaded[key], values[key]) for key in ("step", "exp_avg", "exp_avg_sq"))
            assert loaded["exp_avg"].data_ptr() != values["exp_avg"].data_ptr()  # copied, not shared
    with pytest.raises(ValueError, match="this policy has 2"):
        Adam(_parameters(1)[:2], lr=1e-3).load_state_dict(optimizer.state_dict())


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_torch_optim_loads_the_fast_optimizers_state(kind):
    """The reference path's torch.optim loads what the fast path's optimizers save (checkpoints written
    before the reference path used torch.optim too), and continues with the same arithmetic."""
    fast_class, torch_class = (Adam, torch.optim.Adam) if kind == "adam" else (RMSprop, torch.optim.RMSprop)
    parameters = _parameters(1)
    optimizer = fast_class(parameters, lr=1e-2)
    _run(optimizer, parameters)
    theirs = [p.detach().clone().requires_grad_() for p in parameters]
    reference = torch_class(theirs, lr=1.0)
    reference.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as read from a checkpoint
    assert reference.param_groups[0]["lr"] == 1e-2
    _run(optimizer, parameters)
    _run(reference, theirs)
    for a, b in zip(parameters, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
