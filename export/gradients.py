"""Backward passes as plain forward graphs, because onnxruntime has no autograd.

``trace_joint`` runs a function that calls ``torch.autograd.grad`` under make_fx, which
records the forward and the backward ops the autograd engine executes as one aten graph.
Core aten decompositions lower most backward ops to ops ONNX has; the ones left without
an ONNX translation get a decomposition here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

aten = torch.ops.aten


def convolution_input_grad(
    grad_output: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias_sizes: Sequence[int] | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    groups: int,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor | None, None, None]:
    """aten.convolution_backward for the input only: a transposed convolution with the same
    weights, stride, padding, dilation and groups. ``output_padding`` restores the rows and
    columns a strided convolution dropped, so the gradient has the input's exact size."""
    if transposed or output_mask[1] or output_mask[2]:
        raise NotImplementedError(
            "only input gradients of ordinary convolutions are exported; freeze the weights (requires_grad_(False))"
        )
    if not output_mask[0]:
        return None, None, None
    kernel = weight.shape[2:]
    extra = [
        size - ((out - 1) * s - 2 * p + d * (k - 1) + 1)
        for size, out, s, p, d, k in zip(input.shape[2:], grad_output.shape[2:], stride, padding, dilation, kernel)
    ]
    grad_input = aten.convolution.default(grad_output, weight, None, stride, padding, dilation, True, extra, groups)
    return grad_input, None, None


def decompositions() -> dict[Any, Callable[..., Any]]:
    """Core aten decompositions plus the backward ops that ONNX cannot express."""
    table = dict(core_aten_decompositions())
    table[aten.convolution_backward.default] = convolution_input_grad
    return table


def trace_joint(fn: Callable[..., Any], *example_inputs: torch.Tensor) -> torch.fx.GraphModule:
    """fn (which may call torch.autograd.grad) -> one fx graph of aten ops, backward included,
    for fixed input shapes."""

    def joint(*inputs: torch.Tensor) -> Any:  # make_fx miscounts the arguments of bound methods
        return fn(*inputs)

    return make_fx(joint, decomposition_table=decompositions())(*example_inputs)
