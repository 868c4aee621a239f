"""The saliency method registries: each method is one module per side (export/saliency_methods,
server/saliency_methods), and the two sides, the parity rules, the page's descriptors, the
control channel and the command lines agree."""

from __future__ import annotations

import numpy as np
import pytest

from stylecam.export.saliency_command import DESCRIPTION
from stylecam.export.saliency_methods import METHODS, method_class
from stylecam.server.compose import Overlay
from stylecam.server.control import CHOICES
from stylecam.server.explain import build_parser
from stylecam.server.saliency_methods import SALIENCY_METHODS, served_method


def test_every_method_has_both_sides_in_one_order():
    assert METHODS == tuple(SALIENCY_METHODS) == ("vanilla", "guided", "smoothgrad", "gradcam", "occlusion")  # by position
    assert CHOICES == ("off", *METHODS)
    assert [method_class(m).position for m in METHODS] == [served_method(m).position for m in METHODS]


@pytest.mark.parametrize("name", METHODS)
def test_each_method_describes_itself_to_the_page_and_the_commands(name):
    served = served_method(name)
    assert served.descriptor() == {"method": name, "label": SALIENCY_METHODS[name], "hint": served.hint}
    assert served.label and served.hint
    assert method_class(name).name == name and f"{name}: {method_class(name).summary}" in DESCRIPTION
    assert name in build_parser("stylecam explain").format_help().replace("\n", " ")
    assert method_class(name).exact == (name in ("gradcam", "occlusion"))  # the strict max rule; the rest median/mean


def test_the_picture_is_the_heat_map_over_the_frame():
    rgb = np.full((24, 32, 3), 100, np.uint8)
    heat = np.zeros((12, 16), np.float32)
    heat[:, 8:] = 1.0
    picture = served_method("gradcam").picture(Overlay(), rgb.copy(), heat, 0.6)
    assert picture.shape == rgb.shape
    assert np.array_equal(picture[:, :8], rgb[:, :8]) and np.abs(picture[:, -8:].astype(int) - 100).max() > 50
