"""The six plugin registries (lenses, saliency methods and style kinds, export and serving sides) share
``server/plugins.py``: a second plugin of one name is refused, an unknown name lists the
valid ones in order, and a plugin registered last still sorts by its position."""

from __future__ import annotations

import pytest

from stylecam.export.lenses import base as export_lenses
from stylecam.export.saliency_methods import base as export_methods
from stylecam.export.style_kinds import base as export_kinds
from stylecam.models.builders import UnknownModel
from stylecam.server.lenses import base as served_lenses
from stylecam.server.model_card import CardError
from stylecam.server.plugins import add, find, in_order
from stylecam.server.saliency_methods import base as served_methods
from stylecam.server.style_kinds import base as served_kinds

# (module, its table, the class a plugin subclasses, register, lookup, what a second one is,
#  the error for an unknown name, its message)
REGISTRIES = [
    (export_lenses, "LENS_CLASSES", export_lenses.Lens, "register_lens", "lens_class", "two lenses named 'twin'", UnknownModel,
     "unknown lens 'xray'; valid: activations, dream, fool, neighbors"),
    (served_lenses, "SERVED_LENSES", served_lenses.ServedLens, "register_lens", "served_lens", "two lenses named 'twin'", CardError,
     "unknown lens method 'xray'; valid: activations, neighbors, fool, dream"),
    (export_methods, "METHOD_CLASSES", export_methods.Attribution, "register_method", "method_class", "two saliency methods named 'twin'", UnknownModel,
     "unknown saliency method 'xray'; valid: vanilla, guided, smoothgrad, gradcam, occlusion"),
    (served_methods, "SERVED_METHODS", served_methods.ServedMethod, "register_method", "served_method", "two saliency methods named 'twin'", CardError,
     "unknown saliency method 'xray'; valid: vanilla, guided, smoothgrad, gradcam, occlusion"),
    (export_kinds, "KIND_CLASSES", export_kinds.StyleKind, "register_kind", "kind_class", "two style kinds named 'twin'", UnknownModel,
     "unknown style kind 'xray'; valid: style, multistyle"),
    (served_kinds, "STYLE_KINDS", served_kinds.ServedStyleKind, "register_kind", "served_kind", "two style kinds named 'twin'", CardError,
     "unknown style kind 'xray'; valid: style, multistyle"),
]


@pytest.mark.parametrize(("module", "table", "base", "register", "lookup", "twice", "error", "unknown"), REGISTRIES,
                         ids=["export lenses", "served lenses", "export methods", "served methods", "export style kinds", "served style kinds"])
def test_each_registry_refuses_twins_and_names_the_valid_ones(monkeypatch, module, table, base, register, lookup, twice, error, unknown):
    monkeypatch.setattr(module, table, dict(getattr(module, table)))
    with pytest.raises(error, match=f"^{unknown}$"):
        getattr(module, lookup)("xray")
    first = type("First", (base,), {"name": "twin", "label": "Twin", "position": 99})
    assert getattr(module, register)(first) is first
    assert getattr(module, lookup)("twin") in (first, getattr(module, table)["twin"])
    with pytest.raises(ValueError, match=f"^{twice}$"):
        getattr(module, register)(type("Second", (base,), {"name": "twin", "label": "Twin", "position": 99}))


def test_the_shared_helpers():
    class P:
        def __init__(self, position: int) -> None:
            self.position = position

    table: dict[str, P] = {}
    for name, position in (("c", 1), ("a", 2), ("b", 1)):
        add(table, name, P(position), "things")
    assert in_order(table) == ["b", "c", "a"]  # by position, then name
    with pytest.raises(ValueError, match="^two things named 'a'$"):
        add(table, "a", P(0), "things")
    assert table["a"].position == 2  # the first one kept
    assert find(table, "c", "thing", KeyError) is table["c"]
    with pytest.raises(LookupError, match="unknown thing None; valid: b, c, a"):
        find(table, None, "thing", LookupError)
