"""``gradcam``: Grad-CAM, as the page and ``explain`` show it."""

from __future__ import annotations

from stylecam.server.saliency_methods.base import ServedMethod, register_method


@register_method
class GradCAM(ServedMethod):
    name, label, position = "gradcam", "Grad-CAM", 4
    hint = "Which regions the last layers use for the class: coarse, class-specific"
