"""`stylecam lab`: each command run for real at a small size, asserting what its method
promises (losses fall, the class wins), not just that a file appeared."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch
from style_helpers import CONTENT, STYLES

from stylecam.cli import main as cli
from stylecam.models.lab.filters import grid_shape
from stylecam.models.lab.gatys import blend_grams

PHOTO = CONTENT / "bsds" / "253027.jpg"  # zebras
BEAR = CONTENT / "coco" / "000000000285.jpg"
QUICK = ["--threads", "2", "--seed", "0"]


def fell(out: str, term: str) -> float:
    """How many times lower a term ended than it started, from the command's report line."""
    first, last = re.search(rf"{term} ([\d.e+-]+) -> ([\d.e+-]+)", out).groups()
    return float(first) / float(last)


def read(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.mark.slow
def test_gatys_from_noise_lowers_style_and_content_losses(tmp_path, capsys):
    assert cli(["lab", "gatys", str(PHOTO), "--style", str(STYLES / "starry_night.jpg"), "--init", "noise", "--size", "64",
                "--steps", "60", "--style-weight", "5", "--content-weight", "5", "--vgg", "hed", "--out", str(tmp_path), *QUICK]) == 0
    out = capsys.readouterr().out
    assert fell(out, "style") > 2 and fell(out, "content") > 2, out  # 2.9x and 3.3x here
    image = read(tmp_path / "253027_gatys_starry_night.png")
    assert max(image.shape[:2]) == 64


@pytest.mark.slow
def test_gatys_blend_target_is_the_weighted_mean_and_colour_can_be_kept(tmp_path, capsys):
    a, b = {"relu1_2": torch.ones(1, 2, 2)}, {"relu1_2": torch.full((1, 2, 2), 5.0)}
    assert torch.equal(blend_grams([a, b], [3.0, 1.0])["relu1_2"], torch.full((1, 2, 2), 2.0))
    assert cli(["lab", "gatys", str(PHOTO), "--style", str(STYLES / "starry_night.jpg"), str(STYLES / "the_scream.jpg"),
                "--style-weights", "1", "1", "--preserve-color", "--size", "48", "--steps", "5", "--vgg", "hed",
                "--out", str(tmp_path), *QUICK]) == 0
    image = read(tmp_path / "253027_gatys_starry_night+the_scream.png")
    photo = cv2.resize(read(PHOTO), image.shape[1::-1], interpolation=cv2.INTER_AREA)
    chroma = [cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int) for x in (image, photo)]
    assert np.abs(chroma[0] - chroma[1]).mean() < 2  # the photo's colours, the styled luminance
    assert cli(["lab", "gatys", str(PHOTO), "--style", str(STYLES / "wave.jpg"), "--style-weights", "1", "2",
                "--out", str(tmp_path), "--vgg", "hed"]) == 2
    assert "one non-negative number per style" in capsys.readouterr().err


@pytest.mark.slow
def test_texture_gram_loss_falls_tenfold_from_noise(tmp_path, capsys):
    assert cli(["lab", "texture", str(STYLES / "starry_night.jpg"), "--size", "64x48", "--steps", "80", "--source-size", "128",
                "--vgg", "hed", "--out", str(tmp_path), *QUICK]) == 0
    out = capsys.readouterr().out
    assert fell(out, "style") >= 10, out
    assert read(tmp_path / "starry_night_texture_relu1_2+relu2_2+relu3_3+relu4_3.png").shape == (48, 64, 3)


@pytest.mark.slow
def test_invert_lower_layers_reconstruct_closer(tmp_path, capsys):
    assert cli(["lab", "invert", str(PHOTO), "--layer", "relu1_2", "relu4_3", "--size", "48", "--steps", "80",
                "--vgg", "hed", "--out", str(tmp_path), *QUICK]) == 0
    out = capsys.readouterr().out
    assert fell(out, "invert relu1_2: 80 steps; feature") > 3 and fell(out, "invert relu4_3: 80 steps; feature") > 1.5, out
    photo = read(PHOTO)
    errors = {}
    for layer in ("relu1_2", "relu4_3"):
        image = read(tmp_path / f"253027_invert_{layer}.png")
        errors[layer] = np.abs(image.astype(int) - cv2.resize(photo, image.shape[1::-1], interpolation=cv2.INTER_AREA)).mean()
    assert errors["relu1_2"] < errors["relu4_3"], errors


@pytest.mark.slow
def test_classviz_makes_the_class_top1(tmp_path, capsys):
    assert cli(["lab", "classviz", "flamingo", "--size", "96", "--steps", "80", "--out", str(tmp_path), *QUICK]) == 0
    out = capsys.readouterr().out
    p = float(re.search(r"p\(flamingo\) = ([\d.]+), top-1 'flamingo'", out).group(1))
    assert p > 0.9, out  # 1.000 here, for seeds 0, 1 and 2
    assert (tmp_path / "classviz_130_flamingo.png").is_file()
    assert cli(["lab", "classviz", "flamingoes", "--out", str(tmp_path)]) == 2
    assert "unknown class 'flamingoes'" in capsys.readouterr().err


@pytest.mark.parametrize("model,count,shape", [("vgg16", 64, (8, 8)), ("efficientnet_lite0", 32, (4, 8))])
def test_filters_grid_matches_the_first_layer(tmp_path, capsys, model, count, shape):
    assert grid_shape(count) == shape
    assert cli(["lab", "filters", "--model", model, "--size", "200", "--vgg", "hed", "--out", str(tmp_path)]) == 0
    assert f"{count} filters of 3x3x3, drawn {shape[0]}x{shape[1]}" in capsys.readouterr().out
    image = read(tmp_path / f"filters_{model}.png")
    tile = (200 - (max(shape) + 1)) // max(shape)
    assert image.shape == (shape[0] * (tile + 1) + 1, shape[1] * (tile + 1) + 1, 3)
    assert image[1:1 + tile, 1:1 + tile].std() > 0  # a drawn filter, not a blank tile


@pytest.mark.slow
def test_fool_makes_the_target_top1_within_its_budget(tmp_path, capsys):
    from stylecam.models.factory import create_model

    assert cli(["lab", "fool", str(BEAR), "--target", "zebra", "--size", "128", "--epsilon", "4", "--out", str(tmp_path), *QUICK]) == 0
    assert "'brown bear'" in capsys.readouterr().out
    fooled = read(tmp_path / "000000000285_fool_zebra.png")
    photo = cv2.resize(read(BEAR), fooled.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(fooled.astype(int) - photo.astype(int)).max() <= 4
    model = create_model("efficientnet_lite0").eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(fooled).permute(2, 0, 1)[None].float() / 255)
    assert int(logits.argmax()) == 340  # zebra, from the written picture
    assert (tmp_path / "000000000285_fool_zebra_perturbation.png").is_file()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Eight photos, and a mirrored copy of a ninth that stays outside (the query)."""
    import shutil

    root = tmp_path_factory.mktemp("photos")
    photos = sorted((CONTENT / "bsds").glob("*.jpg"))[:9]
    for path in photos[:8]:
        shutil.copyfile(path, root / path.name)
    cv2.imwrite(str(root / "mirrored.png"), cv2.imread(str(photos[8]))[:, ::-1])
    return root, photos[8]


@pytest.mark.slow
def test_patches_come_strongest_first(folder, tmp_path, capsys):
    root, _ = folder
    assert cli(["lab", "patches", str(root), "--layer", "relu3_3", "--channel", "5", "--top", "4", "--size", "128",
                "--tile", "40", "--vgg", "hed", "--out", str(tmp_path), *QUICK]) == 0
    out = capsys.readouterr().out
    assert "receptive field 40 px, stride 4" in out
    values = [float(v) for v in re.search(r"activations (.*)\n", out).group(1).split(", ")]
    assert len(values) == 4 and values == sorted(values, reverse=True) and values[-1] > 0
    assert read(tmp_path / "patches_relu3_3_5.png").shape == (40, 4 * 40 + 3 * 2, 3)
    assert cli(["lab", "patches", str(root), "--layer", "relu1_2", "--channel", "64", "--vgg", "hed", "--out", str(tmp_path)]) == 2
    assert "relu1_2 has channels 0..63" in capsys.readouterr().err


@pytest.mark.slow
def test_a_mirrored_copy_is_the_nearest_neighbour_in_feature_space(folder, tmp_path, capsys):
    root, query = folder
    assert cli(["lab", "neighbors", str(root), "--query", str(query), "--top", "3", "--size", "160",
                "--out", str(tmp_path), *QUICK]) == 0
    features = re.search(r"features: (.*)\n", capsys.readouterr().out).group(1).split(", ")
    assert features[0] == "mirrored.png", features
    assert (tmp_path / f"{query.stem}_neighbors.png").is_file()


@pytest.mark.slow
def test_tsne_layout_is_the_same_under_a_fixed_seed(folder, tmp_path):
    from stylecam.models.lab.tsne import layout

    root, _ = folder
    features = np.random.default_rng(0).random((9, 1280), dtype=np.float32)
    first, again = layout(features, seed=3), layout(features, seed=3)
    assert first.shape == (9, 2) and np.array_equal(first, again)
    assert first.min() == 0 and first.max() == 1
    assert cli(["lab", "tsne", str(root), "--size", "96", "--canvas", "256", "--tile", "32", "--out", str(tmp_path), *QUICK]) == 0
    assert read(tmp_path / f"tsne_{root.name}.png").shape == (256, 256, 3)
