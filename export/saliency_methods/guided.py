"""``guided``: guided backpropagation (Springenberg et al. 2015)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from stylecam.export.saliency_methods.base import Attribution, register_method


class _GuidedGate(torch.autograd.Function):
    """Identity forward; backward passes only positive gradients where the activation
    output is strictly inside (0, upper): guided backprop's rule for ReLU and ReLU6."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, output: torch.Tensor, upper: float) -> torch.Tensor:
        ctx.save_for_backward(output)
        ctx.upper = upper
        return output.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (output,) = ctx.saved_tensors
        open_range = (output > 0) & (output < ctx.upper)
        # a mask product, not where(..., zeros_like): the exporter would fold the zeros into
        # megabytes of constant initializers
        return grad.clamp(min=0.0) * open_range.to(grad.dtype), None


@contextmanager
def guided_activations(model: nn.Module) -> Iterator[None]:
    """While active, every nn.ReLU / nn.ReLU6 in ``model`` back-propagates guided gradients."""

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return _GuidedGate.apply(output, 6.0 if isinstance(module, nn.ReLU6) else math.inf)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@register_method
class GuidedBackprop(Attribution):
    """Springenberg et al. 2015: input gradient with negative gradients stopped at every
    ReLU/ReLU6, max |.| over RGB. Other activations (hardswish) back-propagate normally."""

    name, position = "guided", 2
    summary = "the input gradient with negative gradients stopped at every ReLU (Springenberg et al. 2015)"

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with guided_activations(self.model):
            logits, grad, chosen = self._input_gradient(image, target)
        return logits, grad[0].abs().amax(0), chosen
