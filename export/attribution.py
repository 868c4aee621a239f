"""Saliency methods with PyTorch autograd, one class per method with captum's ``.attribute``.

Every method takes ``image``: float32 (1, 3, H, W) RGB in [0, 1] at the classifier's input
size, and ``target``: int64 (1,) class index, -1 (or None) meaning the top-1 class. It
returns a raw map: float32 (H, W), >= 0, unnormalised; ``normalise_map`` scales it to
[0, 1]. ``explain`` also returns the logits (1000,) and the class explained (1,), which
the exported graphs output too. These classes are both the PyTorch reference and what
``export.gradients`` traces, so the exported backward pass is the same computation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from stylecam.models.builders import UnknownModel
from stylecam.models.classifier import ImageClassifier
from stylecam.server.model_card import SALIENCY_METHODS

METHODS = tuple(SALIENCY_METHODS)
NOISE_STEPS = 32  # SmoothGrad noise quantisation: int8 steps per sigma
TOP_PERCENT = 1  # normalise by the value the hottest 1% of pixels reach (the 99th percentile)


def normalise_map(raw: torch.Tensor) -> torch.Tensor:
    """(H, W) >= 0 -> (H, W) in [0, 1]: divided by its 99th percentile, so a few hot pixels
    do not wash out the rest. topk, not quantile, because ONNX has TopK."""
    flat = raw.reshape(-1)
    k = max(1, -(-flat.numel() * TOP_PERCENT // 100))  # integer ceil: floats make ceil(0.01 * 200) = 3
    top = torch.topk(flat, k).values[-1]
    return (raw / (top + 1e-12)).clamp(0.0, 1.0)


def as_target(target: torch.Tensor | int | None) -> torch.Tensor:
    """int64 (1,), -1 meaning top-1."""
    if target is None:
        return torch.tensor([-1])
    return torch.as_tensor(target, dtype=torch.int64).reshape(1)


def _resolve(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The class to explain ((1,) int64) and its one-hot row ((1000,) float32) over logits (B, 1000)."""
    chosen = torch.where(target < 0, logits[:1].argmax(1), target)
    one_hot = (torch.arange(logits.shape[1], device=logits.device) == chosen).to(logits.dtype)
    return chosen, one_hot


class Attribution:
    """Base: a frozen classifier in eval mode. ``options`` are the parameters a card records."""

    name = ""

    def __init__(self, model: ImageClassifier) -> None:
        self.model = model.eval().requires_grad_(False)
        self.options: dict[str, object] = {}

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> logits (1000,), raw map (H, W), class explained (1,)."""
        raise NotImplementedError

    def attribute(self, image: torch.Tensor, target: torch.Tensor | int | None = None) -> torch.Tensor:
        """Raw map float32 (H, W), >= 0."""
        return self.explain(image, as_target(target))[1]

    def _input_gradient(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """d logit_c / d images for a batch whose first image decides the top-1 class."""
        images = images.detach().requires_grad_(True)
        logits = self.model(images)
        chosen, one_hot = _resolve(logits, target)
        (grad,) = torch.autograd.grad(logits, images, grad_outputs=one_hot.expand_as(logits))
        return logits[0], grad, chosen


class Vanilla(Attribution):
    """Simonyan et al. 2014: |d score_c / d image|, max over RGB."""

    name = "vanilla"

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, grad, chosen = self._input_gradient(image, target)
        return logits, grad[0].abs().amax(0), chosen


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


class GuidedBackprop(Attribution):
    """Springenberg et al. 2015: input gradient with negative gradients stopped at every
    ReLU/ReLU6, max |.| over RGB. Other activations (hardswish) back-propagate normally."""

    name = "guided"

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with guided_activations(self.model):
            logits, grad, chosen = self._input_gradient(image, target)
        return logits, grad[0].abs().amax(0), chosen


class SmoothGrad(Attribution):
    """Smilkov et al. 2017: vanilla maps averaged over ``samples`` noisy copies, in one batch.

    The noise is drawn once from ``seed`` (sigma in units of the [0, 1] range) and kept, so
    the method is deterministic and the exported graph holds the same noise as a constant:
    int8 steps of sigma/32 (clipped at 4 sigma), a quarter of the float32 size.
    """

    name = "smoothgrad"

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


class GradCAM(Attribution):
    """Selvaraju et al. 2017 on the last conv block: ReLU(sum_k mean(dy_c/dA_k) A_k),
    bilinearly upsampled to the input size."""

    name = "gradcam"

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.model.features(image).detach().requires_grad_(True)
        logits = self.model.forward_head(features)
        chosen, one_hot = _resolve(logits, target)
        (grad,) = torch.autograd.grad(logits, features, grad_outputs=one_hot.expand_as(logits))
        weights = grad.mean((2, 3), keepdim=True)
        cam = F.relu((weights * features).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return logits[0], cam[0, 0], chosen


class Occlusion(Attribution):
    """Zeiler & Fergus 2014: the drop of the explained class's softmax probability when a grey
    patch hides one of ``grid`` x ``grid`` positions, bilinearly upsampled to the input size.

    Forward only: the clean image and every occluded copy run as one batch. ``patch`` is the
    square's side in pixels; the positions are spread evenly from edge to edge, so with the
    defaults (7 positions of 56 px at 224 px) neighbouring patches overlap by half. The masks
    are built from one row profile per position (7 x 224 numbers), not stored as a stack of
    images, which would add megabytes of constants to the graph.
    """

    name = "occlusion"

    def __init__(self, model: ImageClassifier, grid: int = 7, patch: int = 56, fill: float = 0.5) -> None:
        super().__init__(model)
        height, width = model.pretrained_cfg.input_size
        self.grid, self.fill = grid, fill
        self.options = {"grid": [grid, grid], "patch": patch, "fill": fill, "input_size": [height, width]}
        self.rows, self.columns = (self._profiles(side, grid, patch) for side in (height, width))

    @staticmethod
    def _profiles(side: int, grid: int, patch: int) -> torch.Tensor:
        """(grid, side) float32: 1 where the patch at each position covers the pixel."""
        starts = torch.linspace(0, side - patch, grid).round().long()
        pixels = torch.arange(side)
        return ((pixels >= starts[:, None]) & (pixels < starts[:, None] + patch)).float()

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, columns = self.rows.to(image), self.columns.to(image)
        masks = (rows[:, None, :, None] * columns[None, :, None, :]).reshape(-1, 1, *image.shape[-2:])
        batch = torch.cat([image, image * (1 - masks) + self.fill * masks])
        with torch.no_grad():
            logits = self.model(batch)
        chosen, one_hot = _resolve(logits, target)
        probability = logits.softmax(1) @ one_hot
        drop = (probability[0] - probability[1:]).clamp(min=0.0).reshape(1, 1, self.grid, self.grid)
        heat = F.interpolate(drop, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return logits[0], heat[0, 0], chosen


def create_method(name: str, model: ImageClassifier) -> Attribution:
    """A method by name; an unknown name lists the valid ones."""
    classes = {cls.name: cls for cls in (Vanilla, GuidedBackprop, SmoothGrad, GradCAM, Occlusion)}
    if name not in classes:
        raise UnknownModel(f"unknown saliency method {name!r}; valid: {', '.join(METHODS)}")
    return classes[name](model)
