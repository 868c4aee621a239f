"""The lenses: the lecture's other views of the classifier, frame in, one module each.

Importing the package imports every module in it, and each registers its lens
(``base.register_lens``): adding a lens is adding a file here (and its serving side in
``server/lenses/``). ``LENSES`` names them all.
"""

from __future__ import annotations

from stylecam.export.lenses.base import LENS_CLASSES, Lens, LensParity, lens_class, register_lens
from stylecam.server.plugins import import_all

import_all(__path__, __name__)

LENSES = tuple(LENS_CLASSES)

__all__ = ["LENSES", "LENS_CLASSES", "Lens", "LensParity", "lens_class", "register_lens"]
