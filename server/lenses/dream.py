"""``dream``: DeepDream on one layer; each run starts from the frame blended with the last dream."""

from __future__ import annotations

import numpy as np

from stylecam.server.compose import LensView
from stylecam.server.lenses.base import LensRunner, ServedLens, register_lens
from stylecam.server.model_card import DREAMED, FRAME, LAYER_WEIGHTS


@register_lens
class Dream(ServedLens):
    name, label, position = "dream", "DeepDream", 4
    controls = ("layer",)
    feeds_back = True

    def view(self, runner: LensRunner, frame: np.ndarray, layer: int | None, channel: int, target: int | None) -> LensView:
        index = runner.layer_index(layer)
        weights = np.zeros(len(runner.layers), np.float32)
        weights[index] = 1.0
        out = runner.model.run(**{FRAME: frame, LAYER_WEIGHTS: weights})
        name = runner.layers[index].get("name", str(index))
        return LensView(self.name, image=out[DREAMED], info={"layer": name, "layer_index": index, "note": ["Dreaming on", name, ""]})
