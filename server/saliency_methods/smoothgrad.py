"""``smoothgrad``: SmoothGrad, as the page and ``explain`` show it."""

from __future__ import annotations

from stylecam.server.saliency_methods.base import ServedMethod, register_method


@register_method
class SmoothGrad(ServedMethod):
    name, label, position = "smoothgrad", "SmoothGrad", 3
    hint = "The gradient averaged over noisy copies of the frame: less speckle"
