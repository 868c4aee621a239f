"""The models a fresh clone serves (models/zoo): each card matches its file and each model runs."""

from pathlib import Path

import numpy as np
import pytest

from server.model_card import load_card
from server.ort_model import OrtModel

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"
CARDS = sorted(ZOO.glob("*.json"))
STYLES = {"starry_night", "the_scream", "wave", "composition_vii", "udnie", "shipwreck", "woman_with_hat"}


def test_the_zoo_has_the_default_models():
    cards = [load_card(path) for path in CARDS]
    multi = [c for c in cards if c.kind == "multistyle" and c.arch == "multistyle" and c.precision == "fp32"]
    assert multi and set(multi[0].styles) == STYLES
    assert {c.method for c in cards if c.kind == "saliency"} == {"vanilla", "guided", "smoothgrad", "gradcam"}
    single = {(c.styles[0], c.precision) for c in cards if c.kind == "style" and c.arch == "johnson"}
    assert {("starry_night", "fp32"), ("the_scream", "fp32"), ("starry_night", "fp16"), ("the_scream", "fp16")} <= single
    for card in cards:
        if card.kind != "saliency":
            assert card.source["train_command"].startswith("stylecam train")
            assert (ZOO / "checkpoints" / Path(card.source["checkpoint"]).name).is_file()


def feeds_for(card) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {"frame": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)}
    if card.input("style_weights"):
        feeds["style_weights"] = np.full(len(card.styles), 1.0 / len(card.styles), np.float32)
    if card.input("target"):
        feeds["target"] = np.array([-1], np.int64)
    return feeds


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_shipped_model_matches_its_card_and_runs(card_path):
    model = OrtModel.load(ZOO / load_card(card_path).onnx, "cpu", threads=2)  # checks every sha256
    card = model.card
    outputs = model.run(**feeds_for(card))
    for spec in card.outputs:
        value = outputs[spec.name]
        assert value.dtype == np.dtype(spec.dtype)
        expected = [{"H": 48, "W": 64}.get(d, d) for d in spec.shape]
        assert list(value.shape) == expected
        assert np.isfinite(value.astype(np.float32)).all()
    if card.kind != "saliency":
        assert outputs["stylized"].std() > 5  # a picture, not a flat colour
