"""``multistyle``: N paintings and any blend of them, learnt ones included."""

from __future__ import annotations

from stylecam.server.style_kinds.base import ServedStyleKind, register_kind


@register_kind
class Blend(ServedStyleKind):
    name, position, blends = "multistyle", 2, True
