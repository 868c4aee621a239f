"""Lens graphs for onnxruntime: the lecture's other views of the classifier, frame in.

Every lens takes FRAME, uint8 (H, W, 3) RGB of any size, resized inside the graph to the
classifier's input exactly as ``export.saliency.preprocess`` does, and gives:

- ``activations``: LOGITS and the raw activations of a few layers spanning the depth;
- ``neighbors``: the gallery photos nearest the frame in feature space (cosine);
- ``fool``: a targeted fooling image (iterative softened-sign gradient descent, L-inf budget);
- ``dream``: DeepDream, gradient ascent on chosen layers' activation energy.

One class per lens (as ``export.attribution``): ``run`` is at once the PyTorch reference
and what ``export.gradients.trace_joint`` unrolls, backward passes included, into plain
ONNX. Nothing is written unless onnxruntime reproduces ``run`` (``compare``'s rules).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from stylecam.export.gradients import trace_joint
from stylecam.export.onnx import OPSET, export_onnx, frame_dims
from stylecam.export.saliency import DEFAULT_CLASSIFIER, check_frames, preprocess
from stylecam.export.verify import verify
from stylecam.export.weight_store import externalise
from stylecam.models.builders import UnknownModel
from stylecam.models.classifier import EfficientNetLite0, ImageClassifier
from stylecam.models.data import ImageError, centre_square, find_images, read_rgb
from stylecam.models.factory import create_model
from stylecam.server.model_card import (
    ACTIVATION,
    DREAMED,
    FOOLED,
    FRAME,
    LAYER_WEIGHTS,
    LENS_METHODS,
    LOGITS,
    NEIGHBORS,
    PERTURBATION,
    SIMILARITY,
    TARGET,
    ModelCard,
    TensorSpec,
    sha256_of,
    write_card,
)

LENSES = tuple(LENS_METHODS)
Arrays = dict[str, np.ndarray]

# Parity rules (onnxruntime against ``run`` in PyTorch on ``check_frames``):
# - activations: every activation and the logits within ACTIVATION_TOLERANCE of that
#   output's range at every element (forward only: no gates to fall either side of);
# - neighbors: the same gallery indices in the same order, cosines within COSINE_TOLERANCE;
# - fool, dream: whole-level images within MEDIAN_LEVELS at the median pixel and
#   MEAN_LEVELS on average. Every step passes through a (softened) sign (fool) and ReLU6
#   gates whose pre-activations can round to either side of 0 or 6, which changes a
#   pixel's step now and then, so no rule can hold every pixel; and the changes cascade
#   step after step, which limits both lenses to a few steps (see Fool and Dream).
#   Fool also keeps |FOOLED - input| within its budget at every pixel, and each run's
#   top-1 class on FOOLED is in the other's top 5 (a borderline attack may reach the
#   target in one run only). The input there is the reference's whole-level input: the
#   graph's own may round a pixel to the next level where the resize lands within ~1e-6
#   of a half level (BUDGET_SLACK_LEVELS); against its own input the graph's last clamp
#   keeps FOOLED within the budget exactly.
ACTIVATION_TOLERANCE = 1e-3
COSINE_TOLERANCE = 1e-4
MEDIAN_LEVELS = 1.0
MEAN_LEVELS = 2.0
BUDGET_SLACK_LEVELS = 1.0


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


# --- the lenses ------------------------------------------------------------------------------


class Lens:
    """Base: a frozen classifier. ``run(image, *extra)`` takes RGB (1, 3, h, w) in [0, 1] at
    the classifier's input size and the extra inputs, and returns the outputs in ``outputs``
    order; ``options`` is what the card records for the server and the page."""

    name = ""

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


class Activations(Lens):
    """Raw activations of layers spanning the depth (Yosinski et al.'s live toolbox), and
    the logits. Forward only."""

    name = "activations"
    LAYERS = ("stem", "block2", "block4", "block10", "block15", "head")

    def __init__(self, model: ImageClassifier) -> None:
        super().__init__(model)
        layers_of(model)
        with torch.no_grad():
            shapes = [a.shape[1:] for a in taps(model, torch.zeros(1, 3, *self.size), self.LAYERS)]
        self.options = {"layers": [{"name": name, "output": f"{ACTIVATION}{i}", "channels": c, "size": [h, w]}
                                   for i, (name, (c, h, w)) in enumerate(zip(self.LAYERS, shapes))],
                        "default_layer": 2}

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        layers = self.options["layers"]
        return (TensorSpec(LOGITS, "float32", (1000,), "ImageNet logits"),
                *(TensorSpec(layer["output"], "float32", (layer["channels"], *layer["size"]),
                             f"raw activation of {layer['name']}") for layer in layers))

    def run(self, image: torch.Tensor, *extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            found = dict(walk(self.model, image))
            logits = self.model.forward_head(found["head"])
        return (logits[0], *(found[name][0] for name in self.LAYERS))


def penultimate(model: ImageClassifier, image: torch.Tensor) -> torch.Tensor:
    """L2-normalised global average of the last conv block (B, C), as lab's ``embed``."""
    return F.normalize(model.features(image).mean((2, 3)), dim=1)


class Neighbors(Lens):
    """The ``k`` gallery photos nearest the frame by the cosine of penultimate features.
    The gallery's rows are stored in half precision, half the bytes (rounding moves a
    cosine by ~1e-3 at most), and cast up in the graph; the exporter folds that cast for
    galleries under 8192 numbers (six photos), which then stay float32."""

    name = "neighbors"

    def __init__(self, model: ImageClassifier, gallery: np.ndarray, k: int = 5) -> None:
        super().__init__(model)
        if len(gallery) < k:
            raise ImageError(f"a gallery needs at least {k} photos; it has {len(gallery)}")
        self.gallery = torch.from_numpy(np.asarray(gallery, np.float16))
        self.k = k
        self.options = {"k": k}

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(NEIGHBORS, "int64", (self.k,), "gallery indices (options['photos']), nearest first"),
                TensorSpec(SIMILARITY, "float32", (self.k,), "their cosine similarity to the frame"))

    def run(self, image: torch.Tensor, *extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            cosine = self.gallery.to(image.dtype) @ penultimate(self.model, image)[0]
            similarity, index = torch.topk(cosine, self.k)
        return index, similarity


class Fool(Lens):
    """Targeted fooling image (Kurakin et al.'s iterative FGSM, as lab ``fool``): ``steps``
    steps of up to ``step_levels`` down the cross-entropy of TARGET, kept within
    ``epsilon_levels`` of the input and in [0, 1], then rounded to whole levels and held
    within the budget of the input's whole levels, so FOOLED is exactly what its uint8
    pixels say and the logits are the classifier's verdict on them.

    Each step moves by tanh(g / mean|g|), a sign() softened for the smallest gradients.
    A hard sign turns float differences of ~1e-6 between runtimes into whole steps at
    pixels whose gradient is near 0, and those cascade: measured on photos at their own size,
    4 hard-sign steps of 2 levels left onnxruntime 1.3-2.5 levels from PyTorch on average
    (over the rule on 1 photo of 8), the softened steps about half that, fooling 10 of 12
    held-out photos instead of 11. For the same reason the steps start from the resized frame,
    not its whole levels: a resize that differs by 1e-6 rounds a few pixels the other way."""

    name = "fool"
    EPSILON_LEVELS = 8

    def __init__(self, model: ImageClassifier, steps: int = 4, epsilon_levels: int = EPSILON_LEVELS, step_levels: int = 2) -> None:
        super().__init__(model)
        self.steps, self.epsilon_levels, self.step_levels = steps, epsilon_levels, step_levels
        layers_of(model)
        self.head_t = model._fc.weight.detach().t().contiguous()
        self.options = {"epsilon_levels": epsilon_levels, "steps": steps, "step_levels": step_levels,
                        "direction": "tanh(gradient / mean |gradient|)"}

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(TARGET, "int64", (1,), "ImageNet class index to make the classifier say (>= 0)"),)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        h, w = self.size
        return (TensorSpec(FOOLED, "uint8", (h, w, 3), "the perturbed classifier input, RGB"),
                TensorSpec(PERTURBATION, "uint8", (h, w, 3),
                           f"128 + the change, amplified so +-{self.epsilon_levels} levels reach +-127"),
                TensorSpec(LOGITS, "float32", (1000,), "ImageNet logits of the classifier on FOOLED"))

    def run(self, image: torch.Tensor, *extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        (target,) = extra
        one_hot = (torch.arange(1000) == target).to(image.dtype)
        epsilon, step = self.epsilon_levels / 255, self.step_levels / 255
        x = image
        for _ in range(self.steps):
            x = x.detach().requires_grad_(True)
            loss = -(F.log_softmax(classify(self.model, self.head_t, x), 1)[0] * one_hot).sum()
            (grad,) = torch.autograd.grad(loss, x)
            direction = torch.tanh(grad / (grad.abs().mean() + 1e-12))
            x = torch.minimum(torch.maximum(x - step * direction, image - epsilon), image + epsilon).clamp(0, 1)
        start = (image * 255).round()
        levels = torch.minimum(torch.maximum((x.detach() * 255).round(), start - self.epsilon_levels), start + self.epsilon_levels)
        with torch.no_grad():
            logits = self.model(levels / 255)
        amplified = (128 + (levels - start) * (127 / self.epsilon_levels)).round()
        return to_levels(levels / 255), to_levels(amplified / 255), logits[0]

    def check_inputs(self) -> list[Arrays]:
        return [{TARGET: np.array([954], np.int64)}, {TARGET: np.array([1], np.int64)}]  # banana, goldfish


class Dream(Lens):
    """DeepDream (Mordvintsev et al.; the lecture's recipe): ``steps`` ascent steps on
    sum_l w_l * 0.5 * mean(a_l^2), whose gradient at layer l is w_l * a_l / size. Each step
    rolls the image by a fixed offset (jitter) and back, divides the gradient by its mean
    |.| and moves ``step_size`` along it, clipped to [0, 1].

    Few, long steps: gradient ascent through ReLU6 gates is chaotic in float32. Measured
    against PyTorch, onnxruntime's dream drifts 0.6 levels on average after 2 steps of 0.03,
    2.3 after 3 and 10 after 6 (and PyTorch drifts from itself under a different summation
    order), so the graph holds 2 steps: a view of what one layer amplifies, not a full dream."""

    name = "dream"
    LAYERS = ("block4", "block7", "block10", "block14")

    def __init__(self, model: ImageClassifier, steps: int = 2, step_size: float = 0.03, jitter: int = 16) -> None:
        super().__init__(model)
        layers_of(model)
        self.steps, self.step_size, self.jitter = steps, step_size, jitter
        self.shifts = [tuple(int(v) for v in s) for s in np.random.default_rng(0).integers(-jitter, jitter + 1, (steps, 2))]
        with torch.no_grad():
            shapes = [a.shape[1:] for a in taps(model, torch.zeros(1, 3, *self.size), self.LAYERS)]
        self.options = {"layers": [{"name": name, "channels": c, "size": [h, w]} for name, (c, h, w) in zip(self.LAYERS, shapes)],
                        "steps": steps, "step_size": step_size, "jitter": jitter, "default_layer": 2}

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(LAYER_WEIGHTS, "float32", (len(self.LAYERS),), "weight of each layer in options['layers']"),)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(DREAMED, "uint8", (*self.size, 3), "the dreamed classifier input, RGB"),)

    def run(self, image: torch.Tensor, *extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        (weights,) = extra
        x = image
        for dy, dx in self.shifts:
            x = x.detach().requires_grad_(True)
            activations = taps(self.model, torch.roll(x, (dy, dx), (2, 3)), self.LAYERS)
            energy = sum(w * 0.5 * a.pow(2).mean() for w, a in zip(weights, activations))
            (grad,) = torch.autograd.grad(energy, x)  # roll's backward rolls the gradient back
            x = (x + self.step_size * grad / (grad.abs().mean() + 1e-8)).clamp(0, 1)
        return (to_levels(x.detach()),)

    def check_inputs(self) -> list[Arrays]:
        return [{LAYER_WEIGHTS: np.eye(len(self.LAYERS), dtype=np.float32)[2]},
                {LAYER_WEIGHTS: np.array([0.5, 0, 0, 0.5], np.float32)}]


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


def compare_activations(got: Arrays, wanted: Arrays, options: dict[str, Any]) -> LensParity:
    measures = {f"{n} error": float(np.abs(got[n] - w).max()) / (float(np.ptp(w)) or 1.0) for n, w in wanted.items()}
    return LensParity("activations", measures, dict.fromkeys(measures, ACTIVATION_TOLERANCE))


def compare_neighbors(got: Arrays, wanted: Arrays, options: dict[str, Any]) -> LensParity:
    measures = {"different indices": float((got[NEIGHBORS] != wanted[NEIGHBORS]).sum()),
                "cosine error": float(np.abs(got[SIMILARITY] - wanted[SIMILARITY]).max())}
    return LensParity("neighbors", measures, {"different indices": 0.0, "cosine error": COSINE_TOLERANCE})


def compare_fool(got: Arrays, wanted: Arrays, options: dict[str, Any]) -> LensParity:
    epsilon = options.get("epsilon_levels", Fool.EPSILON_LEVELS)

    def change(outputs: Arrays) -> np.ndarray:  # PERTURBATION decoded to levels, exactly
        return np.round((outputs[PERTURBATION].astype(np.float32) - 128) * epsilon / 127)

    levels = level_errors({FOOLED: got[FOOLED], "change": change(got)}, {FOOLED: wanted[FOOLED], "change": change(wanted)},
                          (FOOLED, "change"))
    start = wanted[FOOLED].astype(np.float32) - change(wanted)  # the reference's whole-level input
    measures = {"levels beyond the budget": float(np.abs(got[FOOLED].astype(np.float32) - start).max()) - epsilon,
                "top-1 outside the other's top-5": float(top1_outside_top5(got[LOGITS], wanted[LOGITS]))}
    limits = {"levels beyond the budget": BUDGET_SLACK_LEVELS, "top-1 outside the other's top-5": 0.0}
    return LensParity("fool", levels.measures | measures, levels.limits | limits)


def top1_outside_top5(a: np.ndarray, b: np.ndarray) -> int:
    """How many of the two top-1 classes are not in the other's top 5: 0 when both runs
    agree, and also when a borderline attack lands the target first in one run and second
    in the other, which the cascade of changed steps does now and then."""
    top5 = [set(np.argsort(-x)[:5].tolist()) for x in (a, b)]
    return int(np.argmax(a) not in top5[1]) + int(np.argmax(b) not in top5[0])


def compare_dream(got: Arrays, wanted: Arrays, options: dict[str, Any]) -> LensParity:
    return dataclasses.replace(level_errors(got, wanted, (DREAMED,)), method="dream")


RULES = {"activations": compare_activations, "neighbors": compare_neighbors, "fool": compare_fool, "dream": compare_dream}


# --- the neighbours' gallery ---------------------------------------------------------------


def build_gallery(model: ImageClassifier, paths: Sequence[Path]) -> np.ndarray:
    """Each photo's penultimate features (N, C), as the graph computes the frame's (same resize)."""
    size = model.pretrained_cfg.input_size
    with torch.inference_mode():
        rows = [penultimate(model, preprocess(torch.from_numpy(read_rgb(p)), size))[0] for p in paths]
    return torch.stack(rows).numpy()


def gallery_photos(folders: Sequence[Path]) -> list[Path]:
    """The photos under ``folders`` (recursive, sorted per folder); ImageError when none."""
    paths = [p for folder in folders for p in find_images(folder)]
    if not paths:
        raise ImageError(f"no photos under {', '.join(map(str, folders))}")
    return paths


def write_sprite(paths: Sequence[Path], path: Path, tile: int, quality: int) -> int:
    """Square centre crops of ``paths``, ``tile`` px, row by row in a JPEG; returns the columns."""
    columns = int(np.ceil(np.sqrt(len(paths))))
    rows = -(-len(paths) // columns)
    sheet = np.full((rows * tile, columns * tile, 3), 255, np.uint8)
    for i, p in enumerate(paths):
        y, x = divmod(i, columns)
        sheet[y * tile:(y + 1) * tile, x * tile:(x + 1) * tile] = centre_square(read_rgb(p), tile)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise ImageError(f"{path}: cannot write the gallery sprite")
    return columns


# --- reference, comparison and export ------------------------------------------------------


def create_lens(name: str, model: ImageClassifier, gallery: np.ndarray | None = None) -> Lens:
    """A lens by name; an unknown name lists the valid ones. ``neighbors`` needs the
    gallery's features (N, C) (``build_gallery``, or ``stored_gallery`` of a graph)."""
    if name == "neighbors":
        if gallery is None:
            raise ImageError("the neighbors lens needs a gallery: --photos DIR")
        return Neighbors(model, gallery)
    classes = {cls.name: cls for cls in (Activations, Fool, Dream)}
    if name not in classes:
        raise UnknownModel(f"unknown lens {name!r}; valid: {', '.join(LENSES)}")
    return classes[name](model)


def neighbors_lens(model: ImageClassifier, folders: Sequence[Path], sprite: Path, tile: int, quality: int) -> Neighbors:
    """The neighbours lens over the photos under ``folders``, their thumbnails in ``sprite``
    and the card options that let the page find each one there."""
    paths = gallery_photos(folders)
    lens = Neighbors(model, build_gallery(model, paths))
    columns = write_sprite(paths, sprite, tile, quality)
    lens.options |= {"gallery": sprite.name, "tile": tile, "columns": columns, "count": len(paths),
                     "photos": [p.name for p in paths]}
    return lens


def reference(lens: Lens | str, frame: np.ndarray, model: ImageClassifier | None = None,
              gallery: np.ndarray | None = None, **inputs: np.ndarray) -> Arrays:
    """The PyTorch answer the graph must reproduce for ``frame`` (uint8 (H, W, 3)) and the
    extra inputs (TARGET, LAYER_WEIGHTS), keyed like the graph's outputs. ``lens`` is a Lens
    or a name (then ``model`` defaults to the lens classifier and ``neighbors`` needs
    ``gallery``, e.g. ``stored_gallery(onnx_path)``)."""
    if isinstance(lens, str):
        lens = create_lens(lens, model or create_model(DEFAULT_CLASSIFIER), gallery)
    image = preprocess(torch.from_numpy(np.ascontiguousarray(frame)), lens.size)
    extra = [torch.from_numpy(np.asarray(inputs[spec.name])) for spec in lens.inputs]
    outputs = lens.run(image, *extra)
    return {spec.name: out.detach().numpy() for spec, out in zip(lens.outputs, outputs)}


def compare(method: str, got: Arrays, wanted: Arrays, options: dict[str, Any] | None = None) -> LensParity:
    """onnxruntime's outputs against ``reference``'s by the lens's rule (the top of this
    module); ``options`` are the card's (fool reads its budget there). ``.ok``: it passes."""
    if method not in RULES:
        raise UnknownModel(f"unknown lens {method!r}; valid: {', '.join(LENSES)}")
    return RULES[method](got, wanted, options or {})


class LensGraph(nn.Module):
    """(frame uint8 (H, W, 3)[, extra]) -> the lens's outputs; ``joint`` is ``Lens.run``
    traced at the classifier's input size, backward passes unrolled. One named optional
    extra input, not ``*extra``: the exporter cannot give varargs dynamic shapes."""

    def __init__(self, joint: torch.fx.GraphModule, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.joint = joint
        self.input_size = input_size

    def forward(self, frame: torch.Tensor, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        image = preprocess(frame, self.input_size)
        return tuple(self.joint(image) if extra is None else self.joint(image, extra))


def example_inputs(lens: Lens) -> list[torch.Tensor]:
    """Extra inputs for tracing: the first check case's."""
    first = lens.check_inputs()[0]
    return [torch.from_numpy(first[spec.name]) for spec in lens.inputs]


def build_graph(lens: Lens) -> LensGraph:
    joint = trace_joint(lens.run, torch.rand(1, 3, *lens.size), *example_inputs(lens))
    joint.graph.eliminate_dead_code()
    joint.recompile()
    return LensGraph(joint, lens.size)


def strip_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node stack traces and fx names: they are most of an unrolled
    graph's bytes (about 1 kB a node) and mean nothing to onnxruntime."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""


def gallery_tensors(graph: onnx.ModelProto) -> list[onnx.TensorProto]:
    """A neighbours graph's gallery: its one 2-D initializer (half precision, or float32
    when the exporter folded the cast of a gallery under 8192 numbers)."""
    return [t for t in graph.graph.initializer if len(t.dims) == 2]


def stored_gallery(onnx_path: Path) -> np.ndarray:
    """The gallery features (N, C) a neighbours graph holds, for ``reference``."""
    tensors = gallery_tensors(onnx.load(str(onnx_path), load_external_data=False))
    if len(tensors) != 1:
        raise ValueError(f"{onnx_path}: not a neighbours graph (no single 2-D gallery)")
    return onnx.numpy_helper.to_array(tensors[0]).astype(np.float32)


def check(onnx_path: Path, lens: Lens) -> list[LensParity]:
    """``export.verify`` on ``check_frames`` with the lens's extra check inputs and rule."""
    cases = [{FRAME: frame, **extra} for frame, extra in zip(check_frames(lens.size), lens.check_inputs())]
    extras = [spec.name for spec in lens.inputs]
    return verify(onnx_path, cases,
                  lambda feeds: reference(lens, feeds[FRAME], **{n: feeds[n] for n in extras}),
                  lambda got, wanted: compare(lens.name, got, wanted, lens.options))


def card_for(lens: Lens, classifier: str, onnx_path: Path, labels: str, parity: list[LensParity]) -> ModelCard:
    cfg = lens.model.pretrained_cfg
    frame = TensorSpec(FRAME, "uint8", ("H", "W", 3), "RGB frame of any size; resized inside the graph")
    return ModelCard(
        name=onnx_path.stem, kind="lens", onnx=onnx_path.name, sha256=sha256_of(onnx_path),
        inputs=(frame, *lens.inputs), outputs=lens.outputs, method=lens.name, classifier=classifier,
        labels=labels, input_size=lens.size, value_range=(0.0, 255.0), options=lens.options,
        source={"weights": cfg.source, "licence": cfg.licence, "opset": OPSET,
                "parity": [p.measures for p in parity]},
    )


def externalise_weights(graph: onnx.ModelProto, store: Path, keep: Sequence[onnx.TensorProto]) -> dict[str, dict[str, object]]:
    """``weight_store.externalise`` for all initializers but ``keep``, which belong to this
    graph alone and stay inside it (a neighbours gallery would only grow the shared store)."""
    for tensor in keep:
        graph.graph.initializer.remove(tensor)
    external = externalise(graph, store)
    graph.graph.initializer.extend(keep)
    return external


def export_lens(name: str, out_dir: Path, classifier: str = DEFAULT_CLASSIFIER, photos: Sequence[Path] = (),
                tile: int = 96, quality: int = 80) -> Path:
    """Build, export and verify one lens; returns the .onnx path. The graph, its card, the
    class names and (neighbors) the gallery sprite appear in ``out_dir`` only after
    verification passed; the classifier's weights go to its shared store there."""
    if classifier != DEFAULT_CLASSIFIER:  # the one classifier ``walk`` knows; said before loading any weights
        raise UnknownModel(f"lenses walk EfficientNet-Lite0's layers; {classifier} has none: use --classifier {DEFAULT_CLASSIFIER}")
    model = create_model(classifier)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="stylecam-lens-") as tmp:
        staged = Path(tmp) / f"lens_{name}.onnx"
        sprite = staged.with_suffix(".jpg")
        if name == "neighbors":
            if not photos:
                raise ImageError("the neighbors lens needs photos: --photos DIR [DIR ...]")
            lens: Lens = neighbors_lens(model, photos, sprite, tile, quality)
        else:
            lens = create_lens(name, model)
        extras = [spec.name for spec in lens.inputs]
        export_onnx(build_graph(lens), (torch.zeros(240, 320, 3, dtype=torch.uint8), *example_inputs(lens)), staged,
                    [FRAME, *extras], [spec.name for spec in lens.outputs],
                    {"frame": frame_dims(), **dict.fromkeys(["extra"][:len(extras)])}, fuse=False)
        graph = onnx.load(staged)
        strip_metadata(graph)
        onnx.save(graph, staged)
        parity = check(staged, lens)
        out_dir.mkdir(parents=True, exist_ok=True)
        inside = gallery_tensors(graph) if name == "neighbors" else []
        external = externalise_weights(graph, out_dir / f"{classifier}.weights", inside)
        onnx.save(graph, staged)
        labels = model.pretrained_cfg.labels
        card = card_for(lens, classifier, staged, labels.name, parity)
        card = write_card(dataclasses.replace(card, external_data=external), Path(tmp))
        shutil.copyfile(labels, Path(tmp) / labels.name)
        for path in (staged, card, Path(tmp) / labels.name, *([sprite] if sprite.exists() else [])):
            shutil.move(str(path), out_dir / path.name)
    return out_dir / staged.name
