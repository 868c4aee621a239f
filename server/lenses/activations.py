"""``activations``: a layer's most active channels as a mosaic, or one channel as a heat map."""

from __future__ import annotations

import numpy as np

from stylecam.server.compose import LensDrawing, LensView, inferno_lut
from stylecam.server.lenses.base import LensRunner, ServedLens, register_lens
from stylecam.server.model_card import ACTIVATION, FRAME

MOSAIC = 4  # the mosaic shows the MOSAIC x MOSAIC most active channels


def mosaic(activation: np.ndarray, count: int = MOSAIC) -> tuple[np.ndarray, list[int]]:
    """float32 (C, h, w) -> an inferno-coloured uint8 tile grid of its ``count``**2 most
    active channels (by mean), each scaled to its own maximum, and those channels' indices."""
    channels, h, w = activation.shape
    order = [int(c) for c in np.argsort(-activation.mean((1, 2)), kind="stable")[: count * count]]
    grid = np.zeros((count * (h + 1) - 1, count * (w + 1) - 1), np.float32)
    for i, c in enumerate(order):
        tile = np.maximum(activation[c], 0.0)
        y, x = divmod(i, count)
        grid[y * (h + 1): y * (h + 1) + h, x * (w + 1): x * (w + 1) + w] = tile / max(float(tile.max()), 1e-6)
    return inferno_lut()[np.rint(grid * 255).astype(np.uint8)], order


@register_lens
class Activations(ServedLens):
    name, label, position = "activations", "Activations", 1
    controls = ("layer", "channel")

    def view(self, runner: LensRunner, frame: np.ndarray, layer: int | None, channel: int, target: int | None) -> LensView:
        index = runner.layer_index(layer)
        spec = runner.layers[index]
        out = np.asarray(runner.model.run(**{FRAME: frame})[spec.get("output", f"{ACTIVATION}{index}")], np.float32)
        channels, height, width = out.shape[-3:]
        activation = out.reshape(channels, height, width)
        name = spec.get("name", str(index))
        info = {"layer": name, "layer_index": index, "channels": int(channels)}
        if channel >= 0:
            c = min(channel, channels - 1)
            heat = np.maximum(activation[c], 0.0)
            return LensView(self.name, heat=heat / max(float(heat.max()), 1e-6),
                            info={**info, "channel": c, "note": [f"Channel {c} of", name, ""]})
        tiles, order = mosaic(activation)
        return LensView(self.name, inset=tiles, info={**info, "shown": order, "note": ["Most active channels of", name, ""]})

    def picture(self, runner: LensRunner, view: LensView, rgb: np.ndarray, opacity: float) -> np.ndarray:
        """The frame with the heat map or mosaic, as the live page draws it."""
        return LensDrawing().apply(rgb.copy(), view, opacity)
