"""Lens graphs (export.lens): a fresh export of the cheap one, the shipped ones against
PyTorch on real photos, the fooling success rate, the gallery, and the command line."""

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from style_helpers import CONTENT

from stylecam.cli import main as cli
from stylecam.export import lens
from stylecam.export.command import flag_forms
from stylecam.export.lenses import LENSES, neighbors
from stylecam.export.lenses.dream import Dream
from stylecam.models.data import centre_square, read_rgb, split_photos
from stylecam.models.factory import create_model
from stylecam.server.model_card import load_card_for_onnx
from stylecam.server.ort_model import OrtModel

ZOO = Path(__file__).resolve().parent.parent / "models" / "zoo"
BEAR = CONTENT / "coco" / "000000000285.jpg"  # brown bear, 640x480: in the shipped gallery
ZEBRAS = CONTENT / "bsds" / "253027.jpg"  # 481x321
# held-out photos, their centre squares at 224 px (the graph's resize is then exact), with
# targets far from anything in them: banana, goldfish, toaster, analog clock
FOOL_PHOTOS = 12
FOOL_TARGETS = (954, 1, 859, 409)
FOOL_SUCCESS = 0.75  # measured on the shipped graph: 10 of 12


@pytest.fixture(scope="module")
def lite0():
    torch.set_num_threads(2)
    return create_model("efficientnet_lite0")


def shipped(method: str) -> OrtModel:
    model = OrtModel.load(ZOO / f"lens_{method}.onnx", "cpu", threads=2)  # checks every sha256
    assert (model.card.kind, model.card.method, model.card.input_size) == ("lens", method, (224, 224))
    assert (ZOO / model.card.labels).read_text().splitlines()[340] == "zebra"
    return model


@pytest.mark.slow
def test_a_fresh_activations_export_matches_torch_and_says_its_layers(tmp_path, lite0):
    path = lens.export_lens("activations", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "efficientnet_lite0.weights", "efficientnet_lite0.weights.index", "imagenet_classes.txt",
        "lens_activations.json", "lens_activations.onnx"]
    card = load_card_for_onnx(path)
    layers = card.options["layers"]
    assert [(la["name"], la["channels"], la["size"]) for la in layers] == [
        ("stem", 32, [112, 112]), ("block2", 24, [56, 56]), ("block4", 40, [28, 28]),
        ("block10", 112, [14, 14]), ("block15", 320, [7, 7]), ("head", 1280, [7, 7])]
    assert [spec.name for spec in card.outputs] == ["logits", *(la["output"] for la in layers)]
    assert all(p["logits error"] < 1e-3 for p in card.source["parity"])
    rgb = read_rgb(ZEBRAS)
    got = OrtModel.load(path, "cpu", threads=2).run(frame=rgb)
    parity = lens.compare("activations", got, lens.reference(lens.create_lens("activations", lite0), rgb))
    assert parity.ok, parity
    assert int(np.argmax(got["logits"])) == 340  # zebra
    head = got["activation_5"]  # after the head's ReLU6: clipped to [0, 6] at both ends, as a pre-activation is not
    assert got["activation_0"].shape == (32, 112, 112) and head.min() == 0.0 and head.max() <= 6.0 and (head == 0).mean() > 0.05


@pytest.mark.slow
def test_a_fresh_neighbors_export_keeps_its_gallery_inside(tmp_path, lite0):
    """Six photos: the gallery rides in the graph (not in the shared store), the sprite
    holds their thumbnails in order, and a photo finds itself first."""
    photos = tmp_path / "photos"
    photos.mkdir()
    paths = sorted(CONTENT.glob("coco/*.jpg"))[:6]
    for path in paths:
        (photos / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    assert cli(["export", "--neighbors", str(photos), "--out", str(out), "--tile", "32"]) == 0
    card = load_card_for_onnx(out / "lens_neighbors.onnx")
    assert card.options | {"photos": None} == {"k": 5, "gallery": "lens_neighbors.jpg", "tile": 32, "columns": 3,
                                               "count": 6, "photos": None}
    assert card.options["photos"] == [p.name for p in paths]
    gallery = neighbors.stored_gallery(out / "lens_neighbors.onnx")
    assert np.abs(gallery - neighbors.build_gallery(lite0, paths)).max() < 1e-3  # half precision at most
    graph = onnx.load(str(out / "lens_neighbors.onnx"), load_external_data=False)
    inside = neighbors.gallery_tensors(graph)
    assert len(inside) == 1 and tuple(inside[0].dims) == (6, 1280) and not inside[0].external_data
    assert cv2.imread(str(out / "lens_neighbors.jpg")).shape == (64, 96, 3)  # 2 rows of 3 tiles
    got = OrtModel.load(out / "lens_neighbors.onnx", "cpu", threads=2).run(frame=read_rgb(paths[4]))
    assert int(got["neighbors"][0]) == 4 and got["similarity"][0] > 0.99


def test_the_parity_rules_catch_a_wrong_graph():
    wanted = {"fooled": np.full((4, 4, 3), 100, np.uint8), "perturbation": np.full((4, 4, 3), 128, np.uint8),
              "logits": np.arange(1000, dtype=np.float32)}
    assert lens.compare("fool", dict(wanted), wanted).ok
    shifted = {**wanted, "fooled": wanted["fooled"] + 2}  # every pixel 2 levels off: median and mean fail
    assert not lens.compare("fool", shifted, wanted).ok
    beyond = {**wanted, "fooled": wanted["fooled"].copy()}
    beyond["fooled"][0, 0, 0] += 10  # one pixel beyond the budget of 8 (+1 for the resize's rounding)
    result = lens.compare("fool", beyond, wanted, {"epsilon_levels": 8})
    assert not result.ok and "levels beyond the budget" in str(result)
    near = {"neighbors": np.array([3, 1, 2]), "similarity": np.array([0.9, 0.8, 0.7], np.float32)}
    assert not lens.compare("neighbors", {**near, "neighbors": np.array([1, 3, 2])}, near).ok
    assert not lens.compare("neighbors", {**near, "similarity": near["similarity"] + 1e-3}, near).ok
    with pytest.raises(KeyError, match="valid: activations"):
        lens.compare("xray", near, near)


@pytest.mark.parametrize("method,photo,inputs", [
    ("fool", BEAR, {"target": np.array([859], np.int64)}),
    ("dream", ZEBRAS, {"layer_weights": np.array([0, 0, 1, 0], np.float32)}),
    ("neighbors", ZEBRAS, {}),
])
@pytest.mark.slow
def test_shipped_lens_matches_torch_on_a_photo(lite0, method, photo, inputs):
    """Each shipped gradient lens against its PyTorch reference on a real photo at its own
    size (the export's own check used synthetic frames), by the rules in export.lens."""
    model = shipped(method)
    rgb = read_rgb(photo)
    got = model.run(frame=rgb, **inputs)
    parity = lens.compare(method, got, lens.reference(lens.create_lens(method, lite0, ZOO / model.card.onnx), rgb, **inputs),
                          model.card.options)
    print(parity.measures)
    assert parity.ok, parity


def test_neighbors_finds_a_gallery_photo_and_its_sprite_tile():
    model = shipped("neighbors")
    options = model.card.options
    got = model.run(frame=read_rgb(BEAR))
    index = options["photos"].index(BEAR.name)
    assert got["neighbors"].dtype == np.int64 and got["neighbors"].shape == (options["k"],) == (5,)
    assert int(got["neighbors"][0]) == index and got["similarity"][0] > 0.99
    assert np.all(np.diff(got["similarity"]) <= 0)  # best first
    sprite = cv2.imread(str(ZOO / options["gallery"]))[..., ::-1]
    tile, columns = options["tile"], options["columns"]
    assert options["count"] == len(options["photos"]) and sprite.shape[1] == columns * tile
    y, x = divmod(index, columns)
    thumbnail = sprite[y * tile:(y + 1) * tile, x * tile:(x + 1) * tile].astype(np.float32)
    assert np.abs(thumbnail - centre_square(read_rgb(BEAR), tile)).mean() < 8  # JPEG's loss only


@pytest.mark.slow
def test_fooling_images_reach_their_target_on_most_held_out_photos():
    """The issue's test: the target becomes top-1 within the 8-level budget on most
    held-out photos (rate stated above), and every pixel stays within the budget."""
    model = shipped("fool")
    epsilon = model.card.options["epsilon_levels"]
    paths = split_photos([CONTENT], held_out=True)[:FOOL_PHOTOS]
    assert len(paths) == FOOL_PHOTOS
    reached = 0
    for i, path in enumerate(paths):
        rgb = centre_square(read_rgb(path), 224)
        target = FOOL_TARGETS[i % len(FOOL_TARGETS)]
        out = model.run(frame=rgb, target=np.array([target], np.int64))
        change = out["fooled"].astype(np.int16) - rgb.astype(np.int16)
        assert np.abs(change).max() <= epsilon and np.abs(change).max() > 0
        assert np.array_equal(out["perturbation"], np.round(128 + change * 127 / epsilon).astype(np.uint8))
        reached += int(np.argmax(out["logits"])) == target
    print(f"fooled {reached} of {FOOL_PHOTOS}")
    assert reached >= FOOL_SUCCESS * FOOL_PHOTOS


@pytest.mark.slow
def test_dream_weights_pick_layers_and_zero_weights_change_nothing():
    model = shipped("dream")
    assert [la["name"] for la in model.card.options["layers"]] == list(Dream.LAYERS)
    rgb = centre_square(read_rgb(ZEBRAS), 224)
    dreams = [model.run(frame=rgb, layer_weights=w)["dreamed"] for w in np.eye(4, dtype=np.float32)]
    still = model.run(frame=rgb, layer_weights=np.zeros(4, np.float32))["dreamed"]
    assert np.array_equal(still, rgb)
    for i, dream in enumerate(dreams):
        assert dream.shape == (224, 224, 3) and dream.dtype == np.uint8
        assert np.abs(dream.astype(np.float32) - rgb).mean() > 2  # the dream shows
        assert all(np.abs(dream.astype(np.float32) - other).mean() > 1 for other in dreams[i + 1:])  # per layer


def test_the_zoo_ships_every_lens_within_its_budget():
    cards = {p.stem: json.loads(p.read_text()) for p in ZOO.glob("lens_*.json")}
    assert {c["method"] for c in cards.values()} == set(LENSES)
    assert set(cards["lens_fool"]["options"]) == {"epsilon_levels", "steps", "step_levels", "direction"}
    assert {"steps", "step_size", "jitter", "layers"} <= set(cards["lens_dream"]["options"])
    assert {"k", "gallery", "tile", "columns", "count", "photos"} <= set(cards["lens_neighbors"]["options"])
    for card in cards.values():
        assert (ZOO / card["onnx"]).stat().st_size < 2_000_000  # graphs only: weights live in the shared store
        assert set(card["external_data"]) <= {"efficientnet_lite0.weights"}
    shipped_files = [p for p in ZOO.iterdir() if p.suffix in (".onnx", ".json", ".weights", ".index", ".txt", ".jpg")]
    assert sum(p.stat().st_size for p in shipped_files) < 60_000_000


def test_flag_forms_translate_to_subcommands():
    assert flag_forms(["--saliency", "occlusion", "--out", "d"]) == ["saliency", "occlusion", "--out", "d"]
    assert flag_forms(["--out", "d", "--saliency=gradcam"]) == ["saliency", "gradcam", "--out", "d"]
    assert flag_forms(["--neighbors", "a", "b", "--out", "d"]) == ["lens", "neighbors", "--photos", "a", "b", "--out", "d"]
    assert flag_forms(["lens", "fool", "--out", "d"]) == ["lens", "fool", "--out", "d"]


def test_lens_help_and_bad_input_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(["export", "lens", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width
    assert "lens_LENS.onnx" in text and "--photos DIR" in text and "(default: 96)" in text
    for argv, message in ((["neighbors"], "needs its gallery: --photos DIR"),
                          (["all", "--photos", str(tmp_path)], f"no photos under {tmp_path}"),
                          (["fool", "--classifier", "resnet18"], "lenses walk EfficientNet-Lite0's layers"),
                          (["activations", "--tile", "4"], "--tile 4: between 16 and 512")):
        assert cli(["export", "lens", *argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
