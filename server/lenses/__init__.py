"""The lenses' serving side, one module each (their export side: ``export/lenses/``).

Importing the package imports every module in it, and each registers its lens
(``base.register_lens``). ``LENS_METHODS`` is every lens's label, in the page's order.
"""

from __future__ import annotations

from stylecam.server.lenses.base import SERVED_LENSES, ServedLens, register_lens, served_lens
from stylecam.server.plugins import import_all, in_order

import_all(__path__, __name__)

ORDERED = [SERVED_LENSES[name] for name in in_order(SERVED_LENSES)]
LENS_METHODS = {lens.name: lens.label for lens in ORDERED}
WITH_LAYERS = tuple(lens.name for lens in ORDERED if "layer" in lens.controls)

__all__ = ["LENS_METHODS", "ORDERED", "SERVED_LENSES", "WITH_LAYERS", "ServedLens", "register_lens", "served_lens"]
