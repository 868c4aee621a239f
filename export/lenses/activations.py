"""``activations``: raw activations of layers spanning the depth, and the logits."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stylecam.export.lenses.base import Arrays, Lens, LensParity, layers_of, register_lens, taps, walk
from stylecam.models.classifier import ImageClassifier
from stylecam.server.model_card import ACTIVATION, LOGITS, TensorSpec

ACTIVATION_TOLERANCE = 1e-3  # of each output's range


@register_lens
class Activations(Lens):
    """Raw activations of layers spanning the depth (Yosinski et al.'s live toolbox), and
    the logits. Forward only."""

    name = "activations"
    summary = "raw activations of six layers"
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

    @staticmethod
    def compare(got: Arrays, wanted: Arrays, options: dict[str, Any]) -> LensParity:
        """Every activation and the logits within ACTIVATION_TOLERANCE of that output's range
        at every element (forward only: no gates to fall either side of)."""
        measures = {f"{n} error": float(np.abs(got[n] - w).max()) / (float(np.ptp(w)) or 1.0) for n, w in wanted.items()}
        return LensParity("activations", measures, dict.fromkeys(measures, ACTIVATION_TOLERANCE))
