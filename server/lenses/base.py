"""What every lens's serving side shares: the base class and the registry.

A lens is one module in this package holding one ``ServedLens`` subclass decorated with
``register_lens``: how a run of its graph is fed and read (``view``), the picture
``explain --lens`` writes (``picture``), and what the page offers for it (``label``,
``controls``, sent by ``/api/models``). Its export side is the module of the same name
in ``export/lenses/``. The package imports every module beside this one, so a new file
is a new lens (docs: "Add a lens").
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import cv2
import numpy as np

from stylecam.server.compose import LensView
from stylecam.server.model_card import CardError
from stylecam.server.ort_model import OrtModel
from stylecam.server.plugins import add, find

CONTROLS = ("layer", "channel", "target")  # what the page may let a lens's viewer choose
PICTURE_HEIGHT = 224  # explain's pictures: the photo and the lens's, side by side at this height


class LensRunner(Protocol):
    """What a lens reads from its runner (``runner.LensRunner``): the session, the card's
    options and layers, and the class names."""

    model: OrtModel
    options: dict
    layers: list[dict]
    labels: tuple[str, ...]

    def layer_index(self, layer: int | None) -> int: ...


class ServedLens:
    """One lens as the server runs it. ``position`` orders the page's buttons; ``controls``
    (of CONTROLS) are the choices the page shows for it; ``feeds_back``: each run's input
    blends in the previous run's picture (``runner.fed_back``), as DeepDream videos do."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    position: ClassVar[int] = 0
    controls: ClassVar[tuple[str, ...]] = ()
    feeds_back: ClassVar[bool] = False

    def view(self, runner: LensRunner, frame: np.ndarray, layer: int | None, channel: int, target: int | None) -> LensView:
        """One run of the lens graph on ``frame`` (uint8 (H, W, 3) RGB): what to show. ``info``
        is JSON for the page; its ``note`` ([before, bold, after]) is the line the page shows."""
        raise NotImplementedError

    def picture(self, runner: LensRunner, view: LensView, rgb: np.ndarray, opacity: float) -> np.ndarray:
        """What the page shows for one run, as one picture (``explain --lens``): by default
        the photo beside the lens's picture and its inset."""
        photo = photo_at_height(rgb)
        parts = [photo]
        for picture in (p for p in (view.image, view.inset) if p is not None):
            parts += [gap(), cv2.resize(picture, (photo.shape[1], PICTURE_HEIGHT), interpolation=cv2.INTER_LINEAR)]
        return np.hstack(parts)

    def descriptor(self) -> dict:
        """What ``/api/models`` tells the page about this lens."""
        return {"method": self.name, "label": self.label, "controls": list(self.controls)}


def photo_at_height(rgb: np.ndarray, height: int = PICTURE_HEIGHT) -> np.ndarray:
    return cv2.resize(rgb, (round(rgb.shape[1] * height / rgb.shape[0]), height), interpolation=cv2.INTER_AREA)


def gap(height: int = PICTURE_HEIGHT) -> np.ndarray:
    """A white 8 px column between pictures."""
    return np.full((height, 8, 3), 255, np.uint8)


SERVED_LENSES: dict[str, ServedLens] = {}


def register_lens(cls: type[ServedLens]) -> type[ServedLens]:
    """Class decorator: one lens, by its ``name``; ``CONTROLS`` bound what it may ask for."""
    if unknown := set(cls.controls) - set(CONTROLS):
        raise ValueError(f"lens {cls.name!r}: unknown controls {sorted(unknown)}; valid: {', '.join(CONTROLS)}")
    add(SERVED_LENSES, cls.name, cls(), "lenses")
    return cls


def served_lens(name: str) -> ServedLens:
    """A lens by name; CardError (naming the valid ones) for a card whose lens this server lacks."""
    return find(SERVED_LENSES, name, "lens method", CardError)
