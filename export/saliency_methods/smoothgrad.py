"""``smoothgrad``: input gradients averaged over noisy copies (Smilkov et al. 2017)."""

from __future__ import annotations

import torch

from stylecam.export.saliency_methods.base import Attribution, register_method
from stylecam.models.classifier import ImageClassifier

NOISE_STEPS = 32  # noise quantisation: int8 steps per sigma


@register_method
class SmoothGrad(Attribution):
    """Smilkov et al. 2017: vanilla maps averaged over ``samples`` noisy copies, in one batch.

    The noise is drawn once from ``seed`` (sigma in units of the [0, 1] range) and kept, so
    the method is deterministic and the exported graph holds the same noise as a constant:
    int8 steps of sigma/32 (clipped at 4 sigma), a quarter of the float32 size.
    """

    name, position = "smoothgrad", 3
    summary = "vanilla maps averaged over 8 noisy copies of the frame (Smilkov et al. 2017)"

    def __init__(self, model: ImageClassifier, samples: int = 8, sigma: float = 0.15, seed: int = 0) -> None:
        super().__init__(model)
        height, width = model.pretrained_cfg.input_size
        generator = torch.Generator().manual_seed(seed)
        steps = torch.randn(samples, 3, height, width, generator=generator) * NOISE_STEPS
        self.noise_steps = steps.round().clamp(-127, 127).to(torch.int8)
        self.noise_step = sigma / NOISE_STEPS

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noise = self.noise_steps.to(image.device).to(image.dtype) * self.noise_step
        # the clean image goes first: its logits are the ones reported and decide top-1
        batch = torch.cat([image, image + noise])
        logits, grad, chosen = self._input_gradient(batch, target)
        return logits, grad[1:].abs().amax(1).mean(0), chosen
