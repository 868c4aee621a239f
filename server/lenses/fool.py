"""``fool``: a targeted fooling image, its amplified perturbation and the classifier's verdict."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from stylecam.server.classes import UnknownClass, find_class, top5
from stylecam.server.compose import LensView
from stylecam.server.lenses.base import LensRunner, ServedLens, register_lens
from stylecam.server.model_card import FOOLED, FRAME, LOGITS, PERTURBATION, TARGET

DEFAULT_TARGET = "toaster"  # a fooling image's class until the page picks one (Brown et al.'s patch)


@lru_cache(maxsize=8)
def default_target(labels: tuple[str, ...]) -> int:
    try:
        return find_class(DEFAULT_TARGET, labels)
    except UnknownClass:  # another classifier's labels
        return 0


@register_lens
class Fool(ServedLens):
    name, label, position = "fool", "Fooling image", 3
    controls = ("target",)

    def view(self, runner: LensRunner, frame: np.ndarray, layer: int | None, channel: int, target: int | None) -> LensView:
        aim = default_target(runner.labels) if target is None else target
        out = runner.model.run(**{FRAME: frame, TARGET: np.array([aim], np.int64)})
        logits = np.asarray(out[LOGITS], np.float32).reshape(-1)
        name = runner.labels[aim] if aim < len(runner.labels) else f"class {aim}"
        fooled = int(np.argmax(logits)) == aim
        info = {"target": name, "target_index": aim, "fooled": fooled, "top5": top5(logits, runner.labels),
                "note": ["Aiming at", name, " — fooled" if fooled else " — not yet"]}
        return LensView(self.name, image=out[FOOLED], inset=out[PERTURBATION], info=info)
