"""oneDNN matrix products for the model's linear layers, on CPU in float32, during ``step()`` and ``generate()``.

A CPU build of PyTorch computes ``nn.Linear`` (``F.linear`` → ``addmm``) with MKL's SGEMM. It also ships
oneDNN, whose JIT kernels it uses for other dtypes, and ``torch.ops.mkldnn._linear_pointwise`` runs a
float32 linear layer through them on ordinary (dense, strided) tensors. On the AMD EPYC (Zen 5) CI runs
on, that is 2.2-2.3x MKL's throughput for the shapes of a small LM's training step (480 vs 210 GFLOPS
for [256, 576] x [576, 1536] on 2 cores) and 2-3x for generation's thin products (a [8, 576] x
[576, 49152] LM head: 4.3 vs 12.6 ms), where MKL does not reach the machine's bandwidth.

Within ``onednn_linears(*models)``, every plain ``nn.Linear`` and GPT-2 ``Conv1D`` of the models with at
least ``MIN_WEIGHT_ELEMENTS`` weights runs
``linear`` below: forward through oneDNN, and, with gradients, a backward whose two products
(input gradient, weight gradient) go through oneDNN too. The tied LM head of ``fast.tied`` calls
``raw_linear`` for the same reason. Outside the block the modules are untouched.

Equality: the products equal MKL's up to the order of float additions (the tests hold forwards and
gradients to rtol 1e-5). The exact-1 ratio before the first optimizer step is unaffected: the no-grad
and the training forwards both run oneDNN, on the same shapes, so the same kernels. Off the CPU, in
another dtype, or where the operator is missing or fails its one-time probe, ``linear`` is ``F.linear``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

_active = 0  # nesting depth of onednn_linears blocks
# Layers with fewer weights stay on F.linear: oneDNN's fixed cost per call (~14 us against MKL's ~5 us here)
# outweighs its faster kernel for small products, such as LoRA's rank-16 factors or a d=128 GPT-2's attention.
MIN_WEIGHT_ELEMENTS = 1 << 16


@functools.cache
def available() -> bool:
    """Whether this torch has a oneDNN float32 linear operator that agrees with ``F.linear`` (probed once)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        operator = torch.ops.mkldnn._linear_pointwise
        generator = torch.Generator().manual_seed(0)
        x, w = torch.randn(5, 7, generator=generator), torch.randn(3, 7, generator=generator)
        b = torch.randn(3, generator=generator)
        got = operator(x, w, b, "none", [], "")
        transposed = operator(x.t().contiguous().t(), w.t().contiguous().t(), None, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    expected = nn.functional.linear(x, w, b)
    return bool(torch.allclose(got, expected, rtol=1e-5, atol=1e-5)) and bool(
        torch.allclose(transposed, nn.functional.linear(x, w), rtol=1e-5, atol=1e-5))


def _applies(*tensors: torch.Tensor | None) -> bool:
    return _active > 0 and all(
        t is None or (t.device.type == "cpu" and t.dtype == torch.float32 and t.layout == torch.strided) for t in tensors
    ) and available()


def raw_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` with no autograd: oneDNN inside an ``onednn_linears`` block for a weight of at least
    ``MIN_WEIGHT_ELEMENTS`` (the rule the switched modules follow, so a tied head computes its logits with the
    same kernel as the untied module does in the no-grad pass), else ``F.linear``."""
    if weight.numel() >= MIN_WEIGHT_ELEMENTS and _applies(x, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return nn.functional.linear(x, weight, bias)


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` whose forward and backward products run through oneDNN."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        flat_grad = grad.reshape(-1, grad.shape[-1])  # [N, out]
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.mkldnn._linear_pointwise(grad, weight.t(), None, "none", [], "")  # [..., in]
        if ctx.needs_input_grad[1]:
            flat_x = x.reshape(-1, x.shape[-1])  # [N, in]
            grad_weight = torch.ops.mkldnn._linear_pointwise(flat_grad.t(), flat_x.t(), None, "none", [], "")
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = flat_grad.sum(0)
        return grad_x, grad_weight, grad_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, through oneDNN (forward and backward) inside an ``onednn_linears`` block."""
    if not _applies(x, weight, bias):
        return nn.functional.linear(x, weight, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return _OneDNNLinear.apply(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _linear_forward(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, module.weight, module.bias)


def _conv1d_forward(module: Any, x: torch.Tensor) -> torch.Tensor:
    # transformers' Conv1D: y = x @ W + b with W [in, out], i.e. a linear layer with weight W.T
    return linear(x, module.weight.t(), module.bias)


def _conv1d_class() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers always has it
        return None
    return Conv1D


@contextmanager
def onednn_linears(*models: nn.Module | None) -> Iterator[int]:
    """Within the block, the models' ``nn.Linear`` and ``Conv1D`` layers run through oneDNN (see the module).

    Yields how many layers were switched (0 where oneDNN does not apply); restored on exit, even on error.
    """
    global _active
    conv1d = _conv1d_class()
    switched: list[nn.Module] = []
    _active += 1
    try:
        if available():
            for model in models:
                for module in (model.modules() if model is not None else ()):
                    if "forward" in module.__dict__:
                        continue  # already switched (a module shared by two models) or patched by someone else
                    weight = getattr(module, "weight", None)
                    if not isinstance(weight, torch.Tensor) or weight.numel() < MIN_WEIGHT_ELEMENTS:
                        continue
                    if type(module) is nn.Linear:
                        module.forward = functools.partial(_linear_forward, module)  # type: ignore[method-assign]
                    elif conv1d is not None and type(module) is conv1d:
                        module.forward = functools.partial(_conv1d_forward, module)  # type: ignore[method-assign]
                    else:
                        continue
                    switched.append(module)
        yield len(switched)
    finally:
        _active -= 1
        for module in switched:
            del module.forward
