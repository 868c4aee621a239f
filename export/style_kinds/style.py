"""``style``: a network that paints one style; the frame is its only input (Johnson et al. 2016)."""

from __future__ import annotations

from stylecam.export.style_kinds.base import StyleKind, register_kind
from stylecam.models.checkpoint import Checkpoint


@register_kind
class Single(StyleKind):
    name, position = "style", 1

    @staticmethod
    def matches(ckpt: Checkpoint) -> bool:
        return len(ckpt.styles) == 1
