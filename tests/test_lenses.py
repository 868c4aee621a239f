"""The lens registries: each lens is one module per side (export/lenses, server/lenses), and
the two sides, the page's descriptors, the control channel and the command lines agree."""

from __future__ import annotations

import pytest

from stylecam.export.lenses import LENSES
from stylecam.export.lenses.base import lens_class
from stylecam.server.control import LENS_CHOICES
from stylecam.server.explain import build_parser
from stylecam.server.lenses import LENS_METHODS, ORDERED, WITH_LAYERS, served_lens
from stylecam.server.lenses import base as served_base
from stylecam.server.lenses.base import CONTROLS, ServedLens


def test_every_lens_has_both_sides_and_nothing_else():
    assert sorted(LENSES) == sorted(LENS_METHODS) == ["activations", "dream", "fool", "neighbors"]
    assert list(LENS_METHODS) == ["activations", "neighbors", "fool", "dream"]  # the page's order, by position
    assert LENS_CHOICES == ("off", *LENS_METHODS) and WITH_LAYERS == ("activations", "dream")


@pytest.mark.parametrize("name", sorted(LENS_METHODS))
def test_each_lens_describes_itself_to_the_page_and_the_commands(name):
    served = served_lens(name)
    assert served.descriptor() == {"method": name, "label": LENS_METHODS[name], "controls": list(served.controls)}
    assert set(served.controls) <= set(CONTROLS) and served.label
    assert lens_class(name).name == name and lens_class(name).summary
    assert name in build_parser("stylecam explain").format_help().replace("\n", " ")
    assert (served.feeds_back, lens_class(name).needs_photos) == {"dream": (True, False), "neighbors": (False, True)}.get(name, (False, False))


def test_a_lens_asking_for_an_unknown_control_is_refused(monkeypatch):
    monkeypatch.setattr(served_base, "SERVED_LENSES", dict(served_base.SERVED_LENSES))

    class Knobs(ServedLens):
        name, label, controls = "knobs", "Knobs", ("layer", "colour")

    with pytest.raises(ValueError, match=r"lens 'knobs': unknown controls \['colour'\]"):
        served_base.register_lens(Knobs)

    class Plain(ServedLens):
        name, label = "plain", "Plain"

    served_base.register_lens(Plain)
    assert served_base.SERVED_LENSES["plain"].descriptor() == {"method": "plain", "label": "Plain", "controls": []}
    assert [lens.name for lens in ORDERED] == list(LENS_METHODS)  # the real registry is untouched
