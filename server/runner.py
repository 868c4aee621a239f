"""Models run as their cards say: the one place that builds a graph's feeds and reads its outputs.

The engine, ``stylize``, ``explain`` and the benchmarks all run models through these, so
the tensor names, the blend-weight vector and the target convention live here only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from stylecam.server.classes import top5
from stylecam.server.compose import LensView
from stylecam.server.lenses import served_lens
from stylecam.server.model_card import (
    CLASS,
    FRAME,
    LOGITS,
    SALIENCY,
    STYLE,
    STYLIZED,
    TARGET,
    CardError,
    card_path_for,
    read_labels,
)
from stylecam.server.ort_model import Binding, OrtModel
from stylecam.server.saliency_methods import served_method
from stylecam.server.style_kinds import STYLE_KINDS, served_kind
from stylecam.server.user_styles import LearntStyle

Weights = Sequence[float] | np.ndarray | Callable[[tuple[str, ...]], Sequence[float] | np.ndarray]


class StyleRunner:
    """A style model (``server.style_kinds``). One that blends takes a style vector: the runner mixes
    named vectors by blend weights (the first style alone unless given), the card's and then
    the ``learnt`` ones that fit its network (``user_styles.styles_for``). ``set_learnt``
    replaces the learnt ones while frames run: names and vectors change as one snapshot."""

    def __init__(self, model: OrtModel, learnt: Sequence[LearntStyle] = ()) -> None:
        if model.card.kind not in STYLE_KINDS:
            raise CardError(f"{model.path}: a {model.card.kind} model, not a style model")
        self.model = model
        self.blends = served_kind(model.card.kind).blends
        self._table = model.card.vector_table() if self.blends else None
        self._named: tuple[tuple[str, ...], np.ndarray | None] = (model.card.styles, self._table)
        self.set_learnt(learnt)

    @property
    def styles(self) -> tuple[str, ...]:
        return self._named[0]

    def set_learnt(self, learnt: Sequence[LearntStyle]) -> None:
        if self._table is not None:
            self._named = (self.model.card.styles + tuple(s.name for s in learnt), np.vstack([self._table, *(s.vector for s in learnt)]))

    def style(self, weights: Weights | None = None) -> np.ndarray | None:
        """The style input: blend weights over ``styles`` (or a function that gives them from
        the names; ``Settings.weight_vector``, ``stylize.parse_weights``) mixing their vectors;
        the first style alone by default; None for a single-style model."""
        names, vectors = self._named
        if vectors is None:
            return None
        if weights is None:
            weights = [float(i == 0) for i in range(len(names))]
        elif callable(weights):
            weights = weights(names)
        if len(weights) != len(names):
            raise ValueError(f"{len(weights)} weights for the {len(names)} styles of {self.model.card.name}")
        return np.asarray(weights, dtype=np.float32) @ vectors

    def in_style(self, style: str) -> Callable[[np.ndarray], np.ndarray]:
        """Frame -> stylized frame in one of the model's styles."""
        if style not in self.styles:
            raise CardError(f"{self.model.card.name} has no style {style!r}; it has {', '.join(self.styles)}")
        vector = self.style(lambda names: [float(s == style) for s in names])
        return lambda frame: self(frame, vector)

    def feeds(self, frame: np.ndarray, style: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Inputs for one uint8 HxWx3 RGB frame; ``style`` as ``style()`` returns it (its default when None)."""
        feeds = {FRAME: frame}
        style = self.style() if style is None else style
        if style is not None:
            feeds[STYLE] = style
        return feeds

    def __call__(self, frame: np.ndarray, style: np.ndarray | None = None) -> np.ndarray:
        return self.model.run(**self.feeds(frame, style))[STYLIZED]

    def run_into(self, binding: Binding, out: np.ndarray, frame: np.ndarray, style: np.ndarray | None = None) -> None:
        """Into a preallocated output through the model's IO binding (no per-frame allocation)."""
        binding.run({STYLIZED: out}, **self.feeds(frame, style))


@dataclass(frozen=True)
class Saliency:
    map: np.ndarray  # float32 (h, w) in [0, 1], at the classifier's input size
    logits: np.ndarray  # float32 (classes,)
    explained: int  # the class the map explains


class SaliencyRunner:
    """A saliency model with its class names and its method's serving side (``method``).
    ``target`` -1 explains the top-1 class."""

    def __init__(self, model: OrtModel, labels: tuple[str, ...] | None = None) -> None:
        if model.card.kind != "saliency":
            raise CardError(f"{model.path}: a {model.card.kind} model, not a saliency model")
        self.model = model
        self.method = served_method(model.card.method)
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


DREAM_FEEDBACK = 0.7  # share of the previous dream in the next dream run's input


def fed_back(frame: np.ndarray, previous: np.ndarray | None, share: float = DREAM_FEEDBACK) -> np.ndarray:
    """The next dream run's input: the frame blended with the previous dream (resized to
    it), so that the graph's few steps per run add up over runs while the scene holds
    still, the feedback loop of DeepDream videos; the frame's share keeps it live."""
    if previous is None:
        return frame
    back = cv2.resize(previous, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(back, share, frame, 1.0 - share, 0.0)


class LensRunner:
    """A lens model with its class names; ``__call__`` runs it once on a frame and says what
    to show, as its lens's serving side (``server.lenses``) reads the outputs."""

    def __init__(self, model: OrtModel, labels: tuple[str, ...] | None = None) -> None:
        card = model.card
        if card.kind != "lens":
            raise CardError(f"{model.path}: a {card.kind} model, not a lens")
        self.model = model
        self.method = card.method or ""
        self.options = card.options
        self.layers: list[dict] = list(card.options.get("layers", ()))
        self.labels = labels if labels is not None else (read_labels(card_path_for(model.path), card) if card.labels else ())
        self.lens = served_lens(self.method)

    def layer_index(self, layer: int | None) -> int:
        """The chosen layer, clamped to the card's; None: the card's default (a middle one)."""
        default = int(self.options.get("default_layer", len(self.layers) // 2))
        return default if layer is None else min(max(layer, 0), max(len(self.layers) - 1, 0))

    def __call__(self, frame: np.ndarray, layer: int | None = None, channel: int = -1, target: int | None = None) -> LensView:
        return self.lens.view(self, frame, layer, channel, target)
