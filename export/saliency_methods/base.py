"""What every saliency method shares: the base class, the map's normalisation and the registry.

A method is one module in this package holding one ``Attribution`` subclass decorated with
``register_method``. Every method takes ``image``: float32 (1, 3, H, W) RGB in [0, 1] at the
classifier's input size, and ``target``: int64 (1,) class index, -1 (or None) meaning the
top-1 class. ``explain`` returns the logits (1000,), a raw map float32 (H, W), >= 0,
unnormalised (``normalise_map`` scales it to [0, 1]) and the class explained (1,), which
the exported graphs output too. These classes are both the PyTorch reference and what
``export.gradients`` traces, so the exported backward pass is the same computation. The
package imports every module beside this one, so a new file is a new method (docs:
"Add a lens, a saliency method or a style kind").
"""

from __future__ import annotations

from typing import ClassVar

import torch

from stylecam.models.builders import UnknownModel
from stylecam.models.classifier import ImageClassifier
from stylecam.server.plugins import add, find

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


def resolve(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The class to explain ((1,) int64) and its one-hot row ((1000,) float32) over logits (B, 1000)."""
    chosen = torch.where(target < 0, logits[:1].argmax(1), target)
    one_hot = (torch.arange(logits.shape[1], device=logits.device) == chosen).to(logits.dtype)
    return chosen, one_hot


class Attribution:
    """Base: a frozen classifier in eval mode. ``options`` are the parameters a card records;
    ``position`` orders the methods (the page's buttons, ``export saliency all``); ``exact``
    is the parity rule: True holds onnxruntime's map to PyTorch's at every pixel, False at the
    median pixel and on average (``export.saliency.Parity``)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # what it shows, for ``stylecam export saliency --help``
    position: ClassVar[int] = 0
    exact: ClassVar[bool] = False

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
        chosen, one_hot = resolve(logits, target)
        (grad,) = torch.autograd.grad(logits, images, grad_outputs=one_hot.expand_as(logits))
        return logits[0], grad, chosen


METHOD_CLASSES: dict[str, type[Attribution]] = {}


def register_method(cls: type[Attribution]) -> type[Attribution]:
    """Class decorator: one saliency method, by its ``name``."""
    add(METHOD_CLASSES, cls.name, cls, "saliency methods")
    return cls


def method_class(name: str) -> type[Attribution]:
    """A method's class by name; an unknown name lists the valid ones."""
    return find(METHOD_CLASSES, name, "saliency method", UnknownModel)


def create_method(name: str, model: ImageClassifier) -> Attribution:
    """A method by name on ``model``, with its default options."""
    return method_class(name)(model)
