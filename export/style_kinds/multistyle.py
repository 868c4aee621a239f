"""``multistyle``: a conditional-instance-norm network of N styles (Dumoulin et al. 2017).

Its graph takes the style as a vector (every CIN layer's gamma and beta), not blend weights
over a table baked into its weights: the card carries the named vectors, and a server
mixes them, or adds vectors learnt later, without a new graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from stylecam.export.style_kinds.base import StyleKind, register_kind
from stylecam.models.checkpoint import Checkpoint
from stylecam.models.layers import style_table, with_style_input
from stylecam.server.model_card import STYLE, TensorSpec, encode_vector


def style_vectors(ckpt: Checkpoint) -> torch.Tensor:
    """(N, D) float32: the checkpoint's styles as vectors, in its style order."""
    return style_table(ckpt.build())


def trained_vectors(ckpt: Checkpoint, table: np.ndarray) -> dict[str, dict]:
    """The card's ``style_vectors`` for the styles the network trained with (``table``, one
    row each): each one's vector and where it came from, its painting and training settings."""
    config = ckpt.config
    paintings = list(config.get("styles") or ())

    def per_style(key: str, i: int) -> Any:
        values = config.get(key)
        return values[i if len(values) > 1 else 0] if isinstance(values, (list, tuple)) and values else values

    return {style: {"vector": encode_vector(table[i]),
                    "provenance": {"learnt": "with the network", "painting": str(paintings[i]) if i < len(paintings) else None,
                                   "style_size": per_style("style_size", i), "style_weight": per_style("style_weight", i),
                                   "step": ckpt.step}}
            for i, style in enumerate(ckpt.styles)}


@register_kind
class Blend(StyleKind):
    name, position, inputs = "multistyle", 2, (STYLE,)

    @staticmethod
    def matches(ckpt: Checkpoint) -> bool:
        return len(ckpt.styles) > 1

    def network(self, ckpt: Checkpoint) -> nn.Module:
        return with_style_input(ckpt.build())

    def extra_inputs(self, ckpt: Checkpoint, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """A random blend of the trained styles' vectors."""
        weights = torch.rand(len(ckpt.styles), generator=generator)
        return ((weights / weights.sum()) @ style_vectors(ckpt),)

    def card_inputs(self, ckpt: Checkpoint) -> tuple[tuple[TensorSpec, ...], dict[str, dict[str, Any]]]:
        table = style_vectors(ckpt).numpy()
        spec = TensorSpec(STYLE, "float32", (table.shape[1],), "the style: every CIN layer's gamma then beta, "
                          "concatenated; mix the card's style_vectors by blend weights")
        return (spec,), trained_vectors(ckpt, table)

    def table(self, ckpt: Checkpoint) -> np.ndarray | None:
        return style_vectors(ckpt).numpy()

    def default_name(self, ckpt: Checkpoint) -> str:
        return f"multistyle_{ckpt.kwargs.get('body', ckpt.arch)}"
