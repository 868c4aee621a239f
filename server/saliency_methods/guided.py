"""``guided``: guided backpropagation, as the page and ``explain`` show it."""

from __future__ import annotations

from stylecam.server.saliency_methods.base import ServedMethod, register_method


@register_method
class Guided(ServedMethod):
    name, label, position = "guided", "Guided", 2
    hint = "The gradient through only the units that push the score up: sharper edges"
