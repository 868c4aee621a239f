"""Style kinds are plugins (``export/style_kinds``, ``server/style_kinds``): a checkpoint
exports as the kind that matches it, its example inputs are the inputs its card declares,
and the server runs, lists and blends each kind as its serving side says. Every matrix
here is over the registered kinds, so a new kind without a row fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from style_helpers import make_checkpoint

from stylecam.export.style import example_inputs, style_graph
from stylecam.export.style_kinds import KIND_CLASSES, kind_for
from stylecam.models.builders import UnknownModel
from stylecam.models.checkpoint import Checkpoint
from stylecam.server.model_card import FRAME, KINDS
from stylecam.server.style_kinds import STYLE_KINDS, blends

# kind -> (arch, kwargs, styles) of a small checkpoint that exports as it, and whether it blends
CHECKPOINTS = {
    "style": (("lite", {}, ["udnie"]), False),
    "multistyle": (("multistyle", {"body": "lite", "num_styles": 3}, ["wave", "udnie", "the_scream"]), True),
}


def test_both_sides_register_the_same_kinds_and_cards_accept_them():
    assert set(KIND_CLASSES) == set(STYLE_KINDS) == set(CHECKPOINTS)
    assert set(STYLE_KINDS) <= set(KINDS)
    assert not {"saliency", "lens"} & set(STYLE_KINDS)


@pytest.mark.parametrize("kind", sorted(KIND_CLASSES))
def test_a_checkpoint_exports_as_its_kind_with_the_inputs_its_card_declares(kind, tmp_path: Path):
    (arch, kwargs, styles), blending = CHECKPOINTS[kind]
    ckpt = Checkpoint.load(make_checkpoint(tmp_path / "c.pt", arch, kwargs, styles))
    chosen = kind_for(ckpt)
    assert chosen.name == kind and blends(kind) is blending and STYLE_KINDS[kind].descriptor() == {"stylizes": True, "blends": blending}
    specs, vectors = chosen.card_inputs(ckpt)
    inputs = example_inputs(ckpt, 24, 40, seed=1)
    assert [FRAME, *(s.name for s in specs)] == [FRAME, *(["style"] if blending else [])] == [FRAME, *chosen.inputs]
    assert inputs[0].shape == (24, 40, 3) and inputs[0].dtype == torch.uint8
    for spec, value in zip(specs, inputs[1:], strict=True):
        assert tuple(value.shape) == spec.shape and value.dtype == torch.float32
    assert sorted(vectors) == (sorted(styles) if blending else [])
    assert (chosen.table(ckpt) is not None) is blending
    with torch.no_grad():
        out = style_graph(ckpt)(*inputs).numpy()
    assert out.shape == (24, 40, 3) and out.dtype == np.uint8
    assert chosen.default_name(ckpt) == ("multistyle_lite" if blending else "udnie_lite")


def test_a_checkpoint_no_kind_exports_is_refused(tmp_path: Path):
    ckpt = Checkpoint.load(make_checkpoint(tmp_path / "c.pt", "lite", {}, ["udnie"]))
    ckpt.styles = []
    with pytest.raises(UnknownModel, match="no style kind exports a checkpoint of 0 styles"):
        kind_for(ckpt)
