"""The lenses: the lecture's other views of the classifier, frame in, one module each.

Importing the package imports every module in it, and each registers its lens
(``base.register_lens``): adding a lens is adding a file here (and its serving side in
``server/lenses/``). ``LENSES`` names them all.
"""

from __future__ import annotations

import importlib
import pkgutil

from stylecam.export.lenses.base import LENS_CLASSES, Lens, LensParity, lens_class, register_lens

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

LENSES = tuple(LENS_CLASSES)

__all__ = ["LENSES", "LENS_CLASSES", "Lens", "LensParity", "lens_class", "register_lens"]
