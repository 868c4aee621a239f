"""``fool``: a targeted fooling image (iterative softened-sign gradient descent, L-inf budget)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stylecam.export.lenses.base import Arrays, Lens, LensParity, classify, layers_of, level_errors, register_lens, to_levels
from stylecam.models.classifier import ImageClassifier
from stylecam.server.model_card import FOOLED, LOGITS, PERTURBATION, TARGET, TensorSpec

BUDGET_SLACK_LEVELS = 1.0


@register_lens
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
    summary = "a targeted fooling image, a few softened signed-gradient steps unrolled in the graph"
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

    @staticmethod
    def compare(got: Arrays, wanted: Arrays, options: dict[str, Any]) -> LensParity:
        """FOOLED and the change within MEDIAN_LEVELS / MEAN_LEVELS; |FOOLED - input| within
        the budget at every pixel; each run's top-1 class on FOOLED in the other's top 5 (a
        borderline attack may reach the target in one run only). The input there is the
        reference's whole-level input: the graph's own may round a pixel to the next level
        where the resize lands within ~1e-6 of a half level (BUDGET_SLACK_LEVELS); against
        its own input the graph's last clamp keeps FOOLED within the budget exactly."""
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
