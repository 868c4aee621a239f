"""The style kinds' serving side, one module each (their export side: ``export/style_kinds/``).

Importing the package imports every module in it, and each registers its kind
(``base.register_kind``). ``STYLE_KINDS`` holds them by card kind: a card whose kind is
in it is a style model.
"""

from __future__ import annotations

from stylecam.server.plugins import import_all
from stylecam.server.style_kinds.base import STYLE_KINDS, ServedStyleKind, blends, register_kind, served_kind

import_all(__path__, __name__)

__all__ = ["STYLE_KINDS", "ServedStyleKind", "blends", "register_kind", "served_kind"]
