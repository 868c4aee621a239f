"""What every lens shares: the classifier's layers, the base class, parity and the registry.

A lens is one module in this package holding one ``Lens`` subclass decorated with
``register_lens``: its graph (``run``, at once the PyTorch reference and what
``export.gradients.trace_joint`` unrolls, backward passes included, into plain ONNX), its
extra inputs and outputs, the options its card records, and its parity rule (``compare``:
onnxruntime against ``run``; nothing is written unless it passes). The package imports
every module beside this one, so a new file is a new lens (docs: "Add a lens").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import torch

from stylecam.export.saliency import DEFAULT_CLASSIFIER
from stylecam.models.builders import UnknownModel
from stylecam.models.classifier import EfficientNetLite0, ImageClassifier
from stylecam.server.model_card import TensorSpec
from stylecam.server.plugins import add, find

Arrays = dict[str, np.ndarray]

# Parity tolerances shared by the lenses' rules (each lens's ``compare`` says which it uses):
# whole-level images within MEDIAN_LEVELS at the median pixel and MEAN_LEVELS on average.
# Gradient steps pass through (softened) signs and ReLU6 gates whose pre-activations can
# round to either side of 0 or 6, which changes a pixel's step now and then, so no rule can
# hold every pixel; and the changes cascade step after step, which limits such lenses to a
# few steps (see fool and dream).
MEDIAN_LEVELS = 1.0
MEAN_LEVELS = 2.0


# --- the classifier's layers ---------------------------------------------------------------


def walk(model: EfficientNetLite0, image: torch.Tensor, last: str = "head") -> Iterator[tuple[str, torch.Tensor]]:
    """(name, activation) for the stem, each block ("block0".."block15") and the head's
    conv, in order, stopping after ``last``. ``image``: RGB in [0, 1] (B, 3, H, W)."""
    x = model.act(model._bn0(model._conv_stem((image - model.mean) / model.std)))
    yield "stem", x
    if last == "stem":
        return
    for i, block in enumerate(model._blocks):
        x = block(x)
        yield f"block{i}", x
        if last == f"block{i}":
            return
    yield "head", model.act(model._bn1(model._conv_head(x)))


def layers_of(model: ImageClassifier) -> list[str]:
    """The names ``walk`` gives; UnknownModel for classifiers without a layer walk."""
    if not isinstance(model, EfficientNetLite0):
        raise UnknownModel(f"lenses walk EfficientNet-Lite0's layers; {type(model).__name__} has no walk: "
                           f"use --classifier {DEFAULT_CLASSIFIER}")
    return ["stem", *(f"block{i}" for i in range(len(model._blocks))), "head"]


def taps(model: EfficientNetLite0, image: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
    """The activations of ``names`` (computing no deeper than the deepest of them)."""
    order = layers_of(model)
    last = max(names, key=order.index)
    found = dict(walk(model, image, last))
    return [found[name] for name in names]


class _Head(torch.autograd.Function):
    """The classifier's last layer, pooled @ W.T + b, back-propagating through the same W.T
    as (W.T @ g.T).T rather than g @ W: the graph then holds W.T alone, which the shared
    weights store already has from the saliency graphs (W itself would add 5 MB to the zoo)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, pooled: torch.Tensor, weight_t: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight_t)
        return pooled @ weight_t + bias

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (weight_t,) = ctx.saved_tensors
        return (weight_t @ grad.t()).t(), None, None


def classify(model: EfficientNetLite0, weight_t: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Logits (B, 1000), as ``model(image)``, for graphs that back-propagate through them;
    ``weight_t``: the last layer's weights transposed, contiguous (as the store holds them)."""
    return _Head.apply(model.features(image).mean((2, 3)), weight_t, model._fc.bias)


def to_levels(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] -> uint8 (H, W, 3), whole levels."""
    return (image[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8)


# --- the base class ------------------------------------------------------------------------


class Lens:
    """Base: a frozen classifier. ``run(image, *extra)`` takes RGB (1, 3, h, w) in [0, 1] at
    the classifier's input size and the extra inputs, and returns the outputs in ``outputs``
    order; ``options`` is what the card records for the server and the page."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # what it shows, for ``stylecam export lens --help``
    needs_photos: ClassVar[bool] = False  # built from a folder of photos (``from_photos``)

    def __init__(self, model: ImageClassifier) -> None:
        self.model = model.eval().requires_grad_(False)
        self.size = model.pretrained_cfg.input_size
        self.options: dict[str, Any] = {}

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The inputs beside FRAME."""
        return ()

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        raise NotImplementedError

    def run(self, image: torch.Tensor, *extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def check_inputs(self) -> list[Arrays]:
        """One set of extra inputs per check frame (``check_frames``)."""
        return [{}, {}]

    @staticmethod
    def compare(got: Arrays, wanted: Arrays, options: dict[str, Any]) -> LensParity:
        """The parity rule: onnxruntime's outputs against ``run``'s; ``options`` the card's."""
        raise NotImplementedError

    @classmethod
    def create(cls, model: ImageClassifier, graph: Path | None = None) -> Lens:
        """The lens on ``model``; ``graph``: an exported graph to take stored data from
        (the neighbours' gallery), for a reference run against it."""
        return cls(model)

    @classmethod
    def from_photos(cls, model: ImageClassifier, photos: Sequence[Path], sprite: Path, tile: int, quality: int) -> Lens:
        """For export: the lens, given the ``--photos`` folders (``needs_photos``), writing
        any picture the page shows beside the graph to ``sprite``."""
        return cls(model)

    def kept_inside(self, graph: onnx.ModelProto) -> list[onnx.TensorProto]:
        """Initializers that belong to this graph alone and stay in it (not in the shared store)."""
        return []


# --- parity: onnxruntime against PyTorch ---------------------------------------------------


@dataclass(frozen=True)
class LensParity:
    """How far onnxruntime is from PyTorch on one frame: each measure against its limit."""

    method: str
    measures: dict[str, float]
    limits: dict[str, float]

    @property
    def ok(self) -> bool:
        return all(self.measures[k] <= self.limits[k] for k in self.limits)

    def __str__(self) -> str:
        failed = [f"{k} {self.measures[k]:.4g} > {self.limits[k]:.4g}" for k in self.limits if self.measures[k] > self.limits[k]]
        return f"{self.method}: " + ("; ".join(failed) or "all measures within their limits")


def level_errors(got: Arrays, wanted: Arrays, names: Sequence[str]) -> LensParity:
    """Median and mean |got - wanted| in levels of whole-level images, against their limits."""
    measures: dict[str, float] = {}
    limits: dict[str, float] = {}
    for n in names:
        error = np.abs(got[n].astype(np.float32) - wanted[n].astype(np.float32))
        measures |= {f"{n} median levels": float(np.median(error)), f"{n} mean levels": float(error.mean())}
        limits |= {f"{n} median levels": MEDIAN_LEVELS, f"{n} mean levels": MEAN_LEVELS}
    return LensParity("", measures, limits)


# --- the registry ----------------------------------------------------------------------------


LENS_CLASSES: dict[str, type[Lens]] = {}


def register_lens(cls: type[Lens]) -> type[Lens]:
    """Class decorator: one lens, by its ``name``."""
    add(LENS_CLASSES, cls.name, cls, "lenses")
    return cls


def lens_class(name: str) -> type[Lens]:
    """A lens's class by name; an unknown name lists the valid ones."""
    return find(LENS_CLASSES, name, "lens", UnknownModel)
