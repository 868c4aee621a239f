"""What every style kind shares on the export side: the base class and the registry.

A kind is one module in this package holding one ``StyleKind`` subclass decorated with
``register_kind``: which checkpoints it exports (``matches``), the network its graph wraps,
the graph's extra inputs with their example values, and what its card records beside the
frame. Every kind keeps the export's parity rule: each pixel of onnxruntime's output
within ``tolerance`` levels of the float32 network's (``export.verify.max_error``). The
package imports every module beside this one, so a new file is a new kind.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from stylecam.models.builders import UnknownModel
from stylecam.models.checkpoint import Checkpoint
from stylecam.server.model_card import PARITY_LEVELS, TensorSpec
from stylecam.server.plugins import add, find, in_order


class StyleKind:
    """One kind of style graph: uint8 frame (and ``inputs`` after it) in, stylized frame out.
    ``position`` orders the kinds where one is looked for (``kind_for``)."""

    name: ClassVar[str] = ""
    position: ClassVar[int] = 0
    inputs: ClassVar[tuple[str, ...]] = ()  # the graph's input names after the frame, in order
    tolerance: ClassVar[float] = float(PARITY_LEVELS)  # uint8 levels, at every pixel

    @staticmethod
    def matches(ckpt: Checkpoint) -> bool:
        """Whether ``ckpt`` exports as this kind."""
        raise NotImplementedError

    def network(self, ckpt: Checkpoint) -> nn.Module:
        """The trained network as the graph calls it: ``net(x, extra)``."""
        return ckpt.build()

    def extra_inputs(self, ckpt: Checkpoint, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Example values of the inputs after the frame, drawn from ``generator``."""
        return ()

    def card_inputs(self, ckpt: Checkpoint) -> tuple[tuple[TensorSpec, ...], dict[str, dict[str, Any]]]:
        """The card's specs of ``inputs``, and its ``style_vectors``."""
        return (), {}

    def table(self, ckpt: Checkpoint) -> np.ndarray | None:
        """The styles the int8 calibration cycles through (one row each), None for none."""
        return None

    def default_name(self, ckpt: Checkpoint) -> str:
        return f"{ckpt.styles[0]}_{ckpt.arch}"


KIND_CLASSES: dict[str, type[StyleKind]] = {}


def register_kind(cls: type[StyleKind]) -> type[StyleKind]:
    """Class decorator: one style kind, by its ``name``."""
    add(KIND_CLASSES, cls.name, cls, "style kinds")
    return cls


def kind_class(name: str) -> type[StyleKind]:
    return find(KIND_CLASSES, name, "style kind", UnknownModel)


def kind_for(ckpt: Checkpoint) -> StyleKind:
    """The first kind, by position, that ``ckpt`` exports as."""
    for name in in_order(KIND_CLASSES):
        if KIND_CLASSES[name].matches(ckpt):
            return KIND_CLASSES[name]()
    raise UnknownModel(f"no style kind exports a checkpoint of {len(ckpt.styles)} styles")
