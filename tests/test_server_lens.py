"""The lenses on the server side: control fields, the activation mosaic and the drawing
worked out by hand; then the shipped lens graphs through the engine, and each one's output
against its PyTorch reference on one frame (``export.lens``'s rules)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from style_helpers import CONTENT

from stylecam.server.compose import MARGIN, LensDrawing, LensView, inferno_lut
from stylecam.server.control import Catalog, ControlError, Settings, apply_config, parse_message
from stylecam.server.images import read_rgb
from stylecam.server.lenses import LENS_METHODS
from stylecam.server.lenses.activations import mosaic
from stylecam.server.model_card import FRAME, LAYER_WEIGHTS, TARGET
from stylecam.server.ort_model import OrtModel
from stylecam.server.runner import LensRunner, fed_back

CATALOG = Catalog(styles=("candy",), saliency=("gradcam",), lenses={"activations": 3, "neighbors": 0, "fool": 0}, classes=("tench", "goldfish", "toaster"))


def apply(message: str, settings: Settings = Settings()) -> Settings:
    return apply_config(parse_message(message), settings, CATALOG)


def test_lens_fields_change_what_they_name_and_a_new_lens_starts_from_its_defaults():
    s = apply('{"type": "config", "lens": "activations", "layer": 2, "channel": 7}')
    assert (s.lens, s.layer, s.channel) == ("activations", 2, 7)
    assert apply('{"type": "config", "channel": -1}', s).channel == -1
    assert apply('{"type": "config", "layer": null}', s).layer is None
    switched = apply('{"type": "config", "lens": "fool", "target": "Goldfish"}', s)
    assert (switched.lens, switched.layer, switched.channel, switched.target) == ("fool", None, -1, 1)
    assert apply('{"type": "config", "target": 2}', switched).target == 2
    assert apply('{"type": "config", "lens": "off"}', s).lens == "off"


@pytest.mark.parametrize(
    "message, expected",
    [
        ('{"type": "config", "lens": "xray"}', "unknown lens 'xray'; valid: off, activations, neighbors, fool, dream"),
        ('{"type": "config", "lens": "dream"}', "no model for lens 'dream'; loaded: activations, neighbors, fool"),
        ('{"type": "config", "lens": "activations", "layer": 3}', "'layer' must be a whole number from 0 to 2, got 3"),
        ('{"type": "config", "lens": "activations", "layer": 1.5}', "'layer' must be a whole number from 0 to 2, got 1.5"),
        ('{"type": "config", "lens": "neighbors", "layer": 0}', "lens 'neighbors' has no layers to choose"),
        ('{"type": "config", "channel": -2}', "'channel' must be a whole number from -1 to 4095, got -2"),
        ('{"type": "config", "channel": true}', "'channel' must be a whole number"),
        ('{"type": "config", "target": "teapot"}', "'target': unknown class 'teapot': give an index 0..2 or a name"),
        ('{"type": "config", "target": "fish"}', "(did you mean goldfish?)"),
        ('{"type": "config", "target": 3}', "'target': class index 3 is out of range 0..2"),
        ('{"type": "config", "target": [1]}', "'target' must be a class index or name, got list"),
        ('{"type": "config", "lenz": "fool"}', "unknown config field(s) 'lenz'"),
    ],
)
def test_bad_lens_fields_name_the_value_and_change_nothing(message, expected):
    before = Settings(lens="activations", layer=1)
    with pytest.raises(ControlError) as error:
        apply(message, before)
    assert expected in str(error.value)


def test_mosaic_shows_the_most_active_channels_first_each_scaled_to_its_maximum():
    activation = np.zeros((20, 2, 3), np.float32)
    for c in range(20):
        activation[c] = c  # channel c is uniformly c: channel 19 is the most active
    activation[5, 0, 0] = 100.0  # channel 5's mean (100 + 5 * 5) / 6 = 20.8 tops them all
    tiles, order = mosaic(activation, count=2)
    assert order == [5, 19, 18, 17]
    assert tiles.shape == (2 * 3 - 1, 2 * 4 - 1, 3) and tiles.dtype == np.uint8
    lut = inferno_lut()
    assert (tiles[0, 0] == lut[255]).all()  # channel 5's peak is its own maximum: the hottest colour
    assert (tiles[0, 1] == lut[round(5 / 100 * 255)]).all()  # the rest of channel 5, scaled by that peak
    assert (tiles[0, 4:] == lut[255]).all()  # channel 19 is flat: all at its maximum
    assert (tiles[2, :] == lut[0]).all() and (tiles[:, 3] == lut[0]).all()  # the cold gaps between tiles


def test_a_dream_is_fed_back_into_the_next_run_with_the_live_frame():
    frame = np.full((48, 64, 3), 100, np.uint8)
    assert fed_back(frame, None) is frame
    dream = np.full((224, 224, 3), 200, np.uint8)
    mixed = fed_back(frame, dream, share=0.7)
    assert mixed.shape == frame.shape and (mixed == 170).all()  # 0.7 * 200 + 0.3 * 100


def test_lens_drawing_replaces_the_frame_insets_its_picture_and_overlays_a_heat_map():
    frame = np.full((120, 160, 3), 50, np.uint8)
    picture = np.full((32, 32, 3), 200, np.uint8)
    inset = np.zeros((10, 20, 3), np.uint8)
    inset[..., 1] = 255
    out = LensDrawing().apply(frame, LensView("fool", image=picture, inset=inset), 0.5)
    assert out is frame
    h = int(120 * 0.35)
    w = round(h * 20 / 10)
    corner = frame[120 - MARGIN - h: 120 - MARGIN, MARGIN: MARGIN + w]
    assert (corner == (0, 255, 0)).all()  # the inset, bottom left, aspect kept
    assert (frame[:120 - MARGIN - h] == 200).all() and (frame[:, MARGIN + w:] == 200).all()  # the picture elsewhere
    hot = np.zeros((4, 4), np.float32)
    hot[:, 2:] = 1.0
    frame = np.full((40, 40, 3), 50, np.uint8)
    LensDrawing().apply(frame, LensView("activations", heat=hot), 1.0)
    assert (frame[:, :12] == 50).all() and (frame[:, 28:] != 50).any()  # cold keeps the frame, hot is coloured


# -- the shipped lens graphs -------------------------------------------------------------
ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"
PHOTO = CONTENT / "coco" / "000000000285.jpg"  # a bear


@pytest.fixture(scope="module")
def classifier():
    from stylecam.models.factory import create_model

    return create_model("efficientnet_lite0")


def extra_inputs(method: str, card) -> dict[str, np.ndarray]:
    if method == "fool":
        return {TARGET: np.array([859], np.int64)}  # toaster
    if method == "dream":
        weights = np.zeros(len(card.options["layers"]), np.float32)
        weights[-1] = 1.0
        return {LAYER_WEIGHTS: weights}
    return {}


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", list(LENS_METHODS))
def test_shipped_lens_matches_pytorch_on_one_photo(method, classifier):
    """Each shipped lens graph, run by onnxruntime as the server runs it, against the PyTorch
    computation it was exported from, on one photo at its own size. The rule is export.lens's:
    activations and logits within 1e-3 of their range everywhere; neighbours the same photos and
    cosines within 1e-4; fooling images and dreams within 1 level at the median pixel and 2 on
    average (sign and ReLU6 gates flip on rounding), the fooling change within its budget."""
    from stylecam.export import lens

    path = ZOO / f"lens_{method}.onnx"
    model = OrtModel.load(path, device="cpu", threads=2)
    frame = read_rgb(PHOTO)
    inputs = extra_inputs(method, model.card)
    got = model.run(**{FRAME: frame}, **inputs)
    wanted = lens.reference(lens.create_lens(method, classifier, path), frame, **inputs)
    parity = lens.compare(method, got, wanted, model.card.options)
    assert parity.ok, str(parity)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_lens_runners_say_what_to_show():
    frame = read_rgb(PHOTO)
    runners = {m: LensRunner(OrtModel.load(ZOO / f"lens_{m}.onnx", device="cpu", threads=2)) for m in LENS_METHODS}
    mosaic_view = runners["activations"](frame)
    layer = runners["activations"].layers[runners["activations"].layer_index(None)]
    assert mosaic_view.inset is not None and mosaic_view.image is None and len(mosaic_view.info["shown"]) == 16
    assert mosaic_view.info["layer"] == layer["name"] and mosaic_view.info["channels"] == layer["channels"]
    assert mosaic_view.info["note"] == ["Most active channels of", layer["name"], ""]  # the page's line
    channel = runners["activations"](frame, layer=0, channel=3)
    assert channel.heat is not None and channel.heat.max() == pytest.approx(1.0) and channel.info["channel"] == 3
    assert channel.info["note"] == ["Channel 3 of", runners["activations"].layers[0]["name"], ""]
    found = runners["neighbors"](frame).info["neighbors"]
    assert len(found) == 5 and all(n["photo"] in runners["neighbors"].options["photos"] for n in found)
    assert [n["similarity"] for n in found] == sorted((n["similarity"] for n in found), reverse=True)
    fooled = runners["fool"](frame)  # the default target: toaster
    assert fooled.image.shape == fooled.inset.shape == (224, 224, 3) and fooled.info["target"] == "toaster"
    assert fooled.info["fooled"] == (fooled.info["top5"][0]["label"] == "toaster")
    assert fooled.info["note"] == ["Aiming at", "toaster", " — fooled" if fooled.info["fooled"] else " — not yet"]
    dreamed = runners["dream"](frame, layer=0)
    assert dreamed.image.shape == (224, 224, 3) and dreamed.info["layer_index"] == 0
    assert dreamed.info["note"] == ["Dreaming on", runners["dream"].layers[0]["name"], ""]
    assert "note" not in found[0] and "note" not in runners["neighbors"](frame).info  # its thumbnails say it


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_lenses_through_the_engine_beside_styling():
    """The shipped style network and lenses in one pipeline: the mosaic is drawn in the
    corner of the styled frame, a fooling image replaces the frame, each new view reaches
    the peer's callback once, and a lens changed meanwhile never shows a stale view."""
    import asyncio

    from conftest import run
    from test_server_track import make_engine, make_frame

    from stylecam.server.testing.client import scene

    async def until_view(pipeline, image, pts):
        for i in range(400):
            out = await pipeline.process(make_frame(image, pts + i))
            if pipeline.lens.result is not None:
                return (await pipeline.process(make_frame(image, pts + i + 1))).to_ndarray(format="rgb24")
            await asyncio.sleep(0.02)
        raise AssertionError(f"no lens view; last frame {out}")

    async def go():
        engine = make_engine(ZOO, process_size=(160, 120))
        errors, seen = [], []
        image = scene(160, 120)
        pipeline = engine.pipeline(Settings(style="multistyle_paint"), errors.append, seen.append)
        styled = (await pipeline.process(make_frame(image, 0))).to_ndarray(format="rgb24")
        pipeline.update(Settings(style="multistyle_paint", lens="activations"))
        with_mosaic = await until_view(pipeline, image, 1)
        h = int(120 * 0.35)
        corner = (slice(120 - MARGIN - h, 120 - MARGIN), slice(MARGIN, MARGIN + h))
        assert np.abs(with_mosaic[corner].astype(int) - styled[corner]).mean() > 20  # the mosaic
        assert np.abs(with_mosaic[:40, -40:].astype(int) - styled[:40, -40:]).mean() < 3  # the styled frame elsewhere
        assert seen and seen[-1]["lens"] == "activations" and len(seen[-1]["shown"]) == 16
        pipeline.update(Settings(style="multistyle_paint", lens="fool", target=1))
        assert pipeline.lens.result is not None  # until the next frame sees the change
        fooled = await until_view(pipeline, image, 500)
        view = pipeline.lens.result
        assert view.info["target"] == "goldfish" and seen[-1]["lens"] == "fool"
        expected = cv2.resize(view.image, (160, 120), interpolation=cv2.INTER_LINEAR)
        outside = np.ones((120, 160), bool)
        outside[corner[0], : MARGIN + h + 1] = False  # the perturbation's inset (square, like the fooled image)
        assert np.abs(fooled[outside].astype(int) - expected[outside]).mean() < 3  # through the video path (YUV 4:2:0)
        assert pipeline.snapshot().lens == "fool" and pipeline.snapshot().lens_info["target"] == "goldfish"
        assert not errors
        engine.close()

    run(go(), timeout=110)
