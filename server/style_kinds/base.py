"""What every style kind's serving side shares: the base class and the registry.

A kind is one module in this package holding one ``ServedStyleKind`` subclass decorated with
``register_kind``: whether its graph blends styles (takes a style vector, mixed from the
card's named vectors and learnt ones by blend weights: ``runner.StyleRunner``) and what the
page is told about it (``descriptor``, sent by ``/api/models``). Its export side is the
module of the same name in ``export/style_kinds/``. The package imports every module beside
this one, so a new file is a new kind.
"""

from __future__ import annotations

from typing import ClassVar

from stylecam.server.model_card import CardError
from stylecam.server.plugins import add, find


class ServedStyleKind:
    """One kind of style model as the server runs it. ``blends``: its graph takes a style
    vector, so it offers blend sliders and learns new paintings (``stylecam learn``)."""

    name: ClassVar[str] = ""
    position: ClassVar[int] = 0
    blends: ClassVar[bool] = False

    def descriptor(self) -> dict:
        """What ``/api/models`` tells the page about a model of this kind."""
        return {"stylizes": True, "blends": self.blends}


STYLE_KINDS: dict[str, ServedStyleKind] = {}


def register_kind(cls: type[ServedStyleKind]) -> type[ServedStyleKind]:
    """Class decorator: one style kind, by its ``name`` (the cards' ``kind``)."""
    add(STYLE_KINDS, cls.name, cls(), "style kinds")
    return cls


def blends(kind: str) -> bool:
    """Whether a card of ``kind`` is a style model whose graph blends styles."""
    return kind in STYLE_KINDS and STYLE_KINDS[kind].blends


def served_kind(name: str | None) -> ServedStyleKind:
    """A kind by name; CardError (naming the valid ones) for a card that is no style model."""
    return find(STYLE_KINDS, name, "style kind", CardError)
