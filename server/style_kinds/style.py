"""``style``: one painting, the frame the graph's only input."""

from __future__ import annotations

from stylecam.server.style_kinds.base import ServedStyleKind, register_kind


@register_kind
class Single(ServedStyleKind):
    name, position = "style", 1
