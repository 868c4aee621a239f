"""The plugin folders' shared mechanics: lenses, saliency methods and style kinds, each one
module per side (``export/lenses``, ``server/lenses``, ``export/saliency_methods``,
``server/saliency_methods``, ``export/style_kinds``, ``server/style_kinds``), found by
importing every module of the folder and registered by ``name`` into a table, ordered by
``position``. Torch-free, so both sides use it."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import TypeVar

V = TypeVar("V")


def import_all(path: Iterable[str], package: str) -> None:
    """Import every module of a package folder (its ``__path__``): each registers itself."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")


def add(table: dict[str, V], name: str, value: V, what: str) -> None:
    """``table[name] = value``; ValueError for a second plugin of one name."""
    if name in table:
        raise ValueError(f"two {what} named {name!r}")
    table[name] = value


def in_order(table: dict[str, V]) -> list[str]:
    """The names by each plugin's ``position``, then name."""
    return sorted(table, key=lambda name: (getattr(table[name], "position", 0), name))


def find(table: dict[str, V], name: str | None, what: str, error: type[Exception]) -> V:
    """``table[name]``; ``error`` naming the valid ones, in order, for an unknown name."""
    if name not in table:
        raise error(f"unknown {what} {name!r}; valid: {', '.join(in_order(table))}")
    return table[name]
