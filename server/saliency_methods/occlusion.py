"""``occlusion``: occlusion, as the page and ``explain`` show it."""

from __future__ import annotations

from stylecam.server.saliency_methods.base import ServedMethod, register_method


@register_method
class Occlusion(ServedMethod):
    name, label, position = "occlusion", "Occlusion", 5
    hint = "How much the class score drops when a grey patch hides each place"
