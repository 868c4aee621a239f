"""The style kinds, export side, one module each: what a style graph takes besides the frame.

Importing the package imports every module in it, and each registers its kind
(``base.register_kind``): a new kind is a new file here and its serving side in
``server/style_kinds/``. ``kind_for`` picks the kind a checkpoint exports as.
"""

from __future__ import annotations

from stylecam.export.style_kinds.base import KIND_CLASSES, StyleKind, kind_class, kind_for, register_kind
from stylecam.server.plugins import import_all

import_all(__path__, __name__)

__all__ = ["KIND_CLASSES", "StyleKind", "kind_class", "kind_for", "register_kind"]
