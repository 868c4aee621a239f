"""``vanilla``: the input gradient, as the page and ``explain`` show it."""

from __future__ import annotations

from stylecam.server.saliency_methods.base import ServedMethod, register_method


@register_method
class Vanilla(ServedMethod):
    name, label, position = "vanilla", "Gradient", 1
    hint = "Where changing a pixel would change the class score most"
