"""``gradcam``: Grad-CAM on the last conv block (Selvaraju et al. 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylecam.export.saliency_methods.base import Attribution, register_method, resolve


@register_method
class GradCAM(Attribution):
    """Selvaraju et al. 2017 on the last conv block: ReLU(sum_k mean(dy_c/dA_k) A_k),
    bilinearly upsampled to the input size. Its backward pass stops at the block's
    activations, before any ReLU gate, so no gate can round differently in onnxruntime:
    ``exact``, its map must agree at every pixel."""

    name, position, exact = "gradcam", 4, True
    summary = "the last conv block's channels weighted by their mean gradient (Selvaraju et al. 2017)"

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.model.features(image).detach().requires_grad_(True)
        logits = self.model.forward_head(features)
        chosen, one_hot = resolve(logits, target)
        (grad,) = torch.autograd.grad(logits, features, grad_outputs=one_hot.expand_as(logits))
        weights = grad.mean((2, 3), keepdim=True)
        cam = F.relu((weights * features).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return logits[0], cam[0, 0], chosen
