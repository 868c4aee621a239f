"""What every saliency method's serving side shares: the base class and the registry.

A method is one module in this package holding one ``ServedMethod`` subclass decorated with
``register_method``: what the page offers for it (``label``, ``hint``, sent by
``/api/models``) and the picture ``explain`` writes (``picture``: by default the heat map
over the frame, drawn by the same ``compose.Overlay`` the engine draws every method's map
with on the stream). Every saliency graph has the same inputs and outputs (the card's
contract), so ``runner.SaliencyRunner`` runs them all. Its export side is the module
of the same name in ``export/saliency_methods/``. The package imports every module beside
this one, so a new file is a new method (docs: "Add a lens, a saliency method or a style kind").
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from stylecam.server.compose import Overlay
from stylecam.server.model_card import CardError
from stylecam.server.plugins import add, find


class ServedMethod:
    """One saliency method as the server shows it. ``position`` orders the page's buttons;
    ``hint`` is the one line the page shows when the pointer rests on its button."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    position: ClassVar[int] = 0
    hint: ClassVar[str] = ""

    def picture(self, overlay: Overlay, rgb: np.ndarray, saliency: np.ndarray, opacity: float) -> np.ndarray:
        """The frame with the heat map over it (``explain``'s PNG); ``rgb`` is drawn on."""
        return overlay.apply(rgb, saliency, opacity)

    def descriptor(self) -> dict:
        """What ``/api/models`` tells the page about this method."""
        return {"method": self.name, "label": self.label, "hint": self.hint}


SERVED_METHODS: dict[str, ServedMethod] = {}


def register_method(cls: type[ServedMethod]) -> type[ServedMethod]:
    """Class decorator: one saliency method, by its ``name``."""
    add(SERVED_METHODS, cls.name, cls(), "saliency methods")
    return cls


def served_method(name: str | None) -> ServedMethod:
    """A method by name; CardError (naming the valid ones) for a card whose method this server lacks."""
    return find(SERVED_METHODS, name, "saliency method", CardError)
