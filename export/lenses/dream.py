"""``dream``: DeepDream, gradient ascent on chosen layers' activation energy."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from stylecam.export.lenses.base import Arrays, Lens, LensParity, layers_of, level_errors, register_lens, taps, to_levels
from stylecam.models.classifier import ImageClassifier
from stylecam.server.model_card import DREAMED, LAYER_WEIGHTS, TensorSpec


@register_lens
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
    summary = "DeepDream steps"
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

    @staticmethod
    def compare(got: Arrays, wanted: Arrays, options: dict[str, Any]) -> LensParity:
        """DREAMED within MEDIAN_LEVELS at the median pixel and MEAN_LEVELS on average."""
        return dataclasses.replace(level_errors(got, wanted, (DREAMED,)), method="dream")
