"""The saliency methods' serving side, one module each (their export side:
``export/saliency_methods/``).

Importing the package imports every module in it, and each registers its method
(``base.register_method``). ``SALIENCY_METHODS`` is every method's label, in the page's order.
"""

from __future__ import annotations

from stylecam.server.plugins import import_all, in_order
from stylecam.server.saliency_methods.base import SERVED_METHODS, ServedMethod, register_method, served_method

import_all(__path__, __name__)

ORDERED = [SERVED_METHODS[name] for name in in_order(SERVED_METHODS)]
SALIENCY_METHODS = {method.name: method.label for method in ORDERED}

__all__ = ["ORDERED", "SALIENCY_METHODS", "SERVED_METHODS", "ServedMethod", "register_method", "served_method"]
