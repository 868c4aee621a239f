"""``vanilla``: the input gradient (Simonyan et al. 2014)."""

from __future__ import annotations

import torch

from stylecam.export.saliency_methods.base import Attribution, register_method


@register_method
class Vanilla(Attribution):
    """Simonyan et al. 2014: |d score_c / d image|, max over RGB."""

    name, position = "vanilla", 1
    summary = "|d score / d pixel|, max over RGB (Simonyan et al. 2014)"

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, grad, chosen = self._input_gradient(image, target)
        return logits, grad[0].abs().amax(0), chosen
