"""Models run as their cards say: the one place that builds a graph's feeds and reads its outputs.

The engine, ``stylize``, ``explain`` and the benchmarks all run models through these, so
the tensor names, the blend-weight vector and the target convention live here only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stylecam.server.classes import top_classes
from stylecam.server.model_card import (
    CLASS,
    FRAME,
    LOGITS,
    SALIENCY,
    STYLE_WEIGHTS,
    STYLIZED,
    TARGET,
    CardError,
    card_path_for,
    read_labels,
)
from stylecam.server.ort_model import Binding, OrtModel


class StyleRunner:
    """A style or multistyle model; a multistyle one is fed blend weights (its first style
    alone unless given)."""

    def __init__(self, model: OrtModel) -> None:
        if model.card.kind not in ("style", "multistyle"):
            raise CardError(f"{model.path}: a {model.card.kind} model, not a style model")
        self.model = model
        self.styles = model.card.styles
        spec = model.card.input(STYLE_WEIGHTS)
        self._dtype = spec.dtype if spec else "float32"
        self.blends = model.card.kind == "multistyle"

    def weights(self, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """The blend-weight input from weights in the card's style order, summing to 1
        (``Settings.weight_vector``, ``stylize.parse_weights``); the first style alone by default."""
        if weights is None:
            weights = [float(i == 0) for i in range(len(self.styles))]
        if len(weights) != len(self.styles):
            raise ValueError(f"{len(weights)} weights for the {len(self.styles)} styles of {self.model.card.name}")
        return np.asarray(weights, dtype=self._dtype)

    def one_hot(self, style: str) -> np.ndarray:
        return self.weights([float(s == style) for s in self.styles])

    def in_style(self, style: str) -> Callable[[np.ndarray], np.ndarray]:
        """Frame -> stylized frame in one of the model's styles."""
        if style not in self.styles:
            raise CardError(f"{self.model.card.name} has no style {style!r}; it has {', '.join(self.styles)}")
        weights = self.one_hot(style) if self.blends else None
        return lambda frame: self(frame, weights)

    def feeds(self, frame: np.ndarray, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Inputs for one uint8 HxWx3 RGB frame; ``weights`` as ``weights()`` returns them."""
        feeds = {FRAME: frame}
        if self.blends:
            feeds[STYLE_WEIGHTS] = self.weights() if weights is None else weights
        return feeds

    def __call__(self, frame: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return self.model.run(**self.feeds(frame, weights))[STYLIZED]

    def run_into(self, binding: Binding, out: np.ndarray, frame: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Into a preallocated output through the model's IO binding (no per-frame allocation)."""
        binding.run({STYLIZED: out}, **self.feeds(frame, weights))


@dataclass(frozen=True)
class Saliency:
    map: np.ndarray  # float32 (h, w) in [0, 1], at the classifier's input size
    logits: np.ndarray  # float32 (classes,)
    explained: int  # the class the map explains


class SaliencyRunner:
    """A saliency model with its class names. ``target`` -1 explains the top-1 class."""

    def __init__(self, model: OrtModel, labels: tuple[str, ...] | None = None) -> None:
        if model.card.kind != "saliency":
            raise CardError(f"{model.path}: a {model.card.kind} model, not a saliency model")
        self.model = model
        self.labels = read_labels(card_path_for(model.path), model.card) if labels is None else labels
        spec = model.card.input(TARGET)
        self._target = None if spec is None else (
            tuple(d if isinstance(d, int) else 1 for d in spec.shape), spec.dtype)

    def feeds(self, frame: np.ndarray, target: int = -1) -> dict[str, np.ndarray]:
        feeds = {FRAME: frame}
        if self._target is not None:
            shape, dtype = self._target
            feeds[TARGET] = np.full(shape, target, dtype=dtype)
        return feeds

    def __call__(self, frame: np.ndarray, target: int = -1) -> Saliency:
        out = self.model.run(**self.feeds(frame, target))
        logits = np.asarray(out[LOGITS], np.float32).reshape(-1)
        explained = int(np.asarray(out[CLASS]).reshape(-1)[0]) if CLASS in out else int(np.argmax(logits))
        return Saliency(np.asarray(out[SALIENCY], np.float32).squeeze(), logits, explained)

    def top5(self, logits: np.ndarray) -> list[dict]:
        return top5(logits, self.labels)


def top5(logits: np.ndarray, labels: tuple[str, ...]) -> list[dict]:
    """The page's top-5 list; an index beyond the labels file shows as ``class N``."""
    return [{"label": labels[i] if i < len(labels) else f"class {i}", "p": round(p, 4)} for i, p in top_classes(logits)]
