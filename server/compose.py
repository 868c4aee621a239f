"""Per-frame compositing, in place: style strength mix, the saliency heat map overlay and
what a lens shows.

All run on every frame, so none allocates frame-sized arrays once warmed up: the
overlay keeps its buffers per frame size and the colour map is a 256-entry lookup table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

INSET = 0.35  # a lens's inset picture is this share of the frame's height
MARGIN = 8  # pixels between the inset and the frame's corner


def inferno_lut() -> np.ndarray:
    """uint8 (256, 3) RGB: the inferno colour map, index 0 (cold, black) to 255 (hot, yellow)."""
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    return cv2.applyColorMap(ramp, cv2.COLORMAP_INFERNO)[:, 0, ::-1].copy()


def mix_strength(stylized: np.ndarray, original: np.ndarray, strength: float, out: np.ndarray) -> np.ndarray:
    """out = round(strength * stylized + (1 - strength) * original); uint8 (H, W, 3) each,
    ``out`` may be either input. strength in [0, 1]."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength {strength} is outside [0, 1]")
    return cv2.addWeighted(stylized, strength, original, 1.0 - strength, 0.0, dst=out)


class Overlay:
    """Blends a heat map onto frames: each pixel moves towards its colour by opacity times
    its saliency, so cold regions keep the frame and hot ones show the colour map. One map
    and one opacity usually serve many frames, so what depends only on them (the resized
    heat, its colours, each pixel's kept share and added colour) is computed when either
    changes, and a frame costs one multiply and one add."""

    def __init__(self, lut: np.ndarray | None = None) -> None:
        self._lut3 = np.ascontiguousarray((inferno_lut() if lut is None else lut).reshape(256, 1, 3))
        self._size: tuple[int, int] | None = None
        self._source: np.ndarray | None = None
        self._opacity: float | None = None

    def _buffers(self, height: int, width: int) -> None:
        if self._size == (height, width):
            return
        self._size, self._source = (height, width), None
        self._heat = np.empty((height, width), np.float32)  # saliency at frame size, in [0, 1]
        self._scratch = np.empty((height, width), np.float32)
        self._index = np.empty((height, width), np.uint8)  # the colour map's index
        self._colour = np.empty((height, width, 3), np.uint8)
        self._keep = np.empty((height, width, 3), np.float32)  # 1 - opacity * heat: the frame's share
        self._add = np.empty((height, width, 3), np.float32)  # opacity * heat * colour + 0.5
        self._blend = np.empty((height, width, 3), np.float32)

    # Whole-array OpenCV calls and single-channel work where they can: on a GPU server the
    # map changes with nearly every frame, and numpy's broadcasting into three channels
    # cost as much as the rest of the overlay together.
    def _colourise(self, saliency: np.ndarray) -> None:
        heat, scratch = self._heat, self._scratch
        cv2.resize(saliency.astype(np.float32, copy=False), heat.shape[::-1], dst=heat, interpolation=cv2.INTER_LINEAR)
        np.clip(heat, 0.0, 1.0, out=heat)
        np.multiply(heat, 255.0, out=scratch)
        np.add(scratch, 0.5, out=scratch)
        np.copyto(self._index, scratch, casting="unsafe")  # truncating x + 0.5 rounds half up
        cv2.applyColorMap(self._index, self._lut3, dst=self._colour)
        self._source, self._opacity = saliency, None

    def _weigh(self, opacity: float) -> None:
        np.multiply(self._heat, opacity, out=self._scratch)
        cv2.merge([self._scratch] * 3, dst=self._keep)
        cv2.multiply(self._colour, self._keep, dst=self._add, dtype=cv2.CV_32F)
        np.add(self._add, 0.5, out=self._add)
        np.subtract(1.0, self._keep, out=self._keep)
        self._opacity = opacity

    def apply(self, frame: np.ndarray, saliency: np.ndarray, opacity: float) -> np.ndarray:
        """frame: uint8 (H, W, 3) RGB, changed in place and returned; saliency: float32
        (h, w) in [0, 1], any size (bilinearly resized to the frame); opacity in [0, 1]."""
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"overlay opacity {opacity} is outside [0, 1]")
        self._buffers(*frame.shape[:2])
        if saliency is not self._source:
            self._colourise(saliency)
        if opacity != self._opacity:
            self._weigh(opacity)
        cv2.multiply(frame, self._keep, dst=self._blend, dtype=cv2.CV_32F)
        cv2.add(self._blend, self._add, dst=self._blend)
        np.copyto(frame, self._blend, casting="unsafe")  # in [0.5, 255.5): truncation rounds half up
        return frame


@dataclass(frozen=True)
class LensView:
    """What one lens run shows: drawn on the frame by ``LensDrawing``, listed by the page."""

    method: str
    heat: np.ndarray | None = None  # float32 (h, w) in [0, 1], drawn like a saliency map
    image: np.ndarray | None = None  # uint8 (h, w, 3) RGB, shown instead of the frame
    inset: np.ndarray | None = None  # uint8 (h, w, 3) RGB, shown in a corner of the frame
    info: dict = field(default_factory=dict)  # JSON for the page: layer, neighbours, top-5


class LensDrawing:
    """Draws one lens run's view on frames: its picture in place of the frame (fooling
    image, dream), its heat map (one channel), and its inset in the bottom-left corner (the
    page shows its own camera bottom right)
    (mosaic, perturbation). The inset is resized once per view and frame size."""

    def __init__(self) -> None:
        self._overlay = Overlay()
        self._key: tuple | None = None
        self._inset: np.ndarray | None = None

    def _resized_inset(self, inset: np.ndarray, height: int, width: int) -> np.ndarray:
        key = (id(inset), height, width)
        if key != self._key or self._inset is None:
            h = max(8, min(int(height * INSET), height - 2 * MARGIN))
            w = max(8, min(round(h * inset.shape[1] / inset.shape[0]), width - 2 * MARGIN))
            nearest = inset.shape[0] * 4 <= h  # small grids of activations stay crisp
            self._inset = cv2.resize(inset, (w, h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)
            self._key = key
        return self._inset

    def apply(self, frame: np.ndarray, view: LensView, opacity: float) -> np.ndarray:
        """frame: uint8 (H, W, 3) RGB, changed in place and returned."""
        height, width = frame.shape[:2]
        if view.image is not None:
            cv2.resize(view.image, (width, height), dst=frame, interpolation=cv2.INTER_LINEAR)
        if view.heat is not None:
            self._overlay.apply(frame, view.heat, opacity)
        if view.inset is not None and height > 4 * MARGIN and width > 4 * MARGIN:
            inset = self._resized_inset(view.inset, height, width)
            h, w = inset.shape[:2]
            frame[height - MARGIN - h: height - MARGIN, MARGIN: MARGIN + w] = inset
        return frame
