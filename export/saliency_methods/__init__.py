"""The saliency methods, PyTorch autograd side, one module each.

Importing the package imports every module in it, and each registers its method
(``base.register_method``): adding a method is adding a file here (and its serving side in
``server/saliency_methods/``). ``METHODS`` names them all, in the page's order.
"""

from __future__ import annotations

from stylecam.export.saliency_methods.base import (
    METHOD_CLASSES,
    Attribution,
    as_target,
    create_method,
    method_class,
    normalise_map,
    register_method,
    resolve,
)
from stylecam.server.plugins import import_all, in_order

import_all(__path__, __name__)

METHODS = tuple(in_order(METHOD_CLASSES))

__all__ = ["METHODS", "METHOD_CLASSES", "Attribution", "as_target", "create_method", "method_class", "normalise_map",
           "register_method", "resolve"]
