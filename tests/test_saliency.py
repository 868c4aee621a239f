import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from style_helpers import CONTENT
from torch import nn

from stylecam.bench.deletion import RANDOM, pick, run, summary
from stylecam.export.gradients import trace_joint
from stylecam.export.saliency import Parity, compare, export_saliency, reference
from stylecam.export.saliency_methods import METHODS, as_target, create_method, method_class, normalise_map
from stylecam.export.saliency_methods.guided import GuidedBackprop
from stylecam.export.saliency_methods.occlusion import Occlusion
from stylecam.export.saliency_methods.vanilla import Vanilla
from stylecam.models.data import read_rgb
from stylecam.models.factory import create_model
from stylecam.server.model_card import CardError, load_card_for_onnx

PHOTOS = [CONTENT / "coco" / "000000000285.jpg", CONTENT / "bsds" / "253027.jpg"]  # brown bear 640x480, zebras 481x321


@pytest.fixture(scope="module")
def lite0():
    torch.set_num_threads(2)
    return create_model("efficientnet_lite0")


ZOO = Path(__file__).resolve().parent.parent / "models" / "zoo"  # the shipped graphs: what users run


# --- the pieces, with answers worked out by hand ------------------------------------------


@pytest.mark.parametrize("stride,padding,groups,size", [(1, 1, 1, 9), (2, 1, 1, 9), (2, 2, 4, 10), (3, 0, 2, 11)])
def test_convolution_backward_decomposes_to_a_transposed_convolution(stride, padding, groups, size):
    torch.manual_seed(0)
    weight = torch.randn(4, 4 // groups, 5, 5)
    x = torch.randn(1, 4, size, size)

    def grad(image):
        image = image.detach().requires_grad_(True)
        out = F.conv2d(image, weight, stride=stride, padding=padding, groups=groups)
        return torch.autograd.grad(out, image, grad_outputs=torch.ones_like(out))[0]

    traced = trace_joint(grad, x)
    ops = {str(n.target) for n in traced.graph.nodes if n.op == "call_function"}
    assert "aten.convolution_backward.default" not in ops
    assert torch.allclose(traced(x), grad(x), atol=1e-5)


class TwoUnits(nn.Module):
    """logit_c = sum over units of w_c * relu(v * x): small enough to differentiate by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.pretrained_cfg = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        hidden = self.relu(image.reshape(1, 3) * torch.tensor([2.0, -1.0, 3.0]))
        return hidden @ torch.tensor([[1.0, -1.0], [1.0, 1.0], [-2.0, 1.0]])


def test_vanilla_and_guided_by_hand():
    image = torch.tensor([1.0, -1.0, 1.0]).reshape(1, 3, 1, 1)  # hidden = relu(2, 1, 3), all open
    model = TwoUnits()
    # d logit_0 / dx = (2*1, -1*1, 3*-2) = (2, -1, -6): vanilla = max |.| = 6
    assert Vanilla(model).attribute(image, 0).item() == 6.0
    # guided: the gradient reaching unit 2 is -2 < 0, stopped; (2, -1, 0) -> max |.| = 2
    assert GuidedBackprop(model).attribute(image, 0).item() == 2.0
    # target -1 = top-1: logits (2 + 1 - 6, -2 + 1 + 3) = (-3, 2) -> class 1; gradient (-2, -1, 3)
    assert Vanilla(model).attribute(image).item() == 3.0


class CornerPixel(nn.Module):
    """logits (10 * (x[0, 0] - 0.75), 0): only the top-left pixel of the red channel counts."""

    def __init__(self) -> None:
        super().__init__()
        self.pretrained_cfg = SimpleNamespace(input_size=(16, 16))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        score = 10 * (image[:, 0, 0, 0] - 0.75)
        return torch.stack([score, torch.zeros_like(score)], 1)


def test_occlusion_by_hand():
    """A white 16x16 image, 4x4 grid of 8-px patches (starts 0, 3, 5, 8 after rounding):
    only the patches at grid row 0 and column 0 cover pixel (0, 0). Grey there turns logit
    2.5 into -2.5, so p(class 0) falls from sigmoid(2.5) to sigmoid(-2.5)."""
    method = Occlusion(CornerPixel(), grid=4, patch=8)
    logits, heat, chosen = method.explain(torch.ones(1, 3, 16, 16), as_target(-1))
    drop = torch.sigmoid(torch.tensor(2.5)) - torch.sigmoid(torch.tensor(-2.5))
    assert chosen.item() == 0 and logits.tolist() == pytest.approx([2.5, 0.0])
    assert heat.shape == (16, 16) and heat.min().item() == 0.0
    assert heat[0, 0].item() == pytest.approx(drop.item())  # the corner keeps the corner cell's value
    assert heat[8:, 8:].abs().max().item() == 0.0  # cells (1..3, 1..3) dropped nothing
    assert method.options == {"grid": [4, 4], "patch": 8, "fill": 0.5, "input_size": [16, 16]}


def test_normalise_map_divides_by_the_99th_percentile():
    raw = torch.arange(1.0, 201.0).reshape(10, 20)  # 200 values: the 2nd largest (k = ceil(0.01*200)) is 199
    out = normalise_map(raw)
    assert out[0, 0].item() == pytest.approx(1 / 199) and out.max().item() == 1.0
    assert out.reshape(-1)[-2].item() == pytest.approx(1.0)


# --- the exported graphs -------------------------------------------------------------------


# one photo per method keeps this quick: the bear explained as its top-1, the zebras as class 340
CASES = {"vanilla": (PHOTOS[0], -1), "smoothgrad": (PHOTOS[0], -1), "guided": (PHOTOS[1], 340), "gradcam": (PHOTOS[1], 340),
         "occlusion": (PHOTOS[0], -1)}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_exported_method_matches_torch_autograd(lite0, method):
    """Each shipped graph against torch autograd on a real photo (the export's own check
    used synthetic frames)."""
    path = ZOO / f"saliency_{method}.onnx"
    card = load_card_for_onnx(path)
    assert (card.kind, card.method, card.classifier, card.input_size) == ("saliency", method, "efficientnet_lite0", (224, 224))
    assert (ZOO / card.labels).read_text().splitlines()[340] == "zebra"
    photo, target = CASES[method]
    rgb = read_rgb(photo)
    outputs = run_graph(path, rgb, target)
    parity = compare(outputs, reference(create_method(method, lite0), rgb, target), exact=method_class(method).exact)
    print(method, photo.name, parity)
    assert outputs["saliency"].shape == (224, 224) and outputs["saliency"].dtype == np.float32
    assert 0.0 <= outputs["saliency"].min() and outputs["saliency"].max() <= 1.0
    assert parity.ok, parity  # for Grad-CAM, at every pixel
    if target >= 0:
        assert int(outputs["class"][0]) == target


def run_graph(path: Path, rgb: np.ndarray, target: int) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = ["logits", "saliency", "class"]
    return dict(zip(names, session.run(names, {"frame": rgb, "target": np.array([target], np.int64)})))


@pytest.mark.slow
def test_a_fresh_export_writes_what_ships(tmp_path):
    """``export_saliency`` from scratch: graph, card and labels land together, the weights
    go to the shared store, and the graph answers as the shipped one does."""
    path = export_saliency("gradcam", "efficientnet_lite0", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "efficientnet_lite0.weights", "efficientnet_lite0.weights.index", "imagenet_classes.txt",
        "saliency_gradcam.json", "saliency_gradcam.onnx"]
    card = json.loads((tmp_path / "saliency_gradcam.json").read_text())
    assert [p["same_class"] for p in card["source"]["parity"]] == [True, True]
    rgb = read_rgb(PHOTOS[1])
    fresh, shipped = run_graph(path, rgb, 340), run_graph(ZOO / path.name, rgb, 340)
    assert np.abs(fresh["saliency"] - shipped["saliency"]).max() < 1e-4
    assert np.abs(fresh["logits"] - shipped["logits"]).max() < 1e-3


def test_cards_record_the_verification():
    card = json.loads((ZOO / "saliency_vanilla.json").read_text())
    assert [p["same_class"] for p in card["source"]["parity"]] == [True, True]
    assert card["source"]["licence"] == "Apache-2.0"


@pytest.mark.slow
@pytest.mark.timeout(1500)  # about 30 s on a quiet 2-core machine; minutes beside other work (2 threads each)
def test_every_method_beats_random_on_deletion(lite0):
    photos = pick([CONTENT / "coco", CONTENT / "bsds"], 8)  # spread evenly, as the benchmark picks them
    table = summary(run(photos, "efficientnet_lite0", METHODS, steps=8, seed=0))
    for method in METHODS:
        assert table[method]["mean_auc"] < table[RANDOM]["mean_auc"], table


def test_methods_share_one_weights_store(tmp_path):
    store = ZOO / "efficientnet_lite0.weights"
    for method in METHODS:
        card = load_card_for_onnx(ZOO / f"saliency_{method}.onnx")
        assert card.external_data[store.name]["bytes"] <= store.stat().st_size
        assert (ZOO / f"saliency_{method}.onnx").stat().st_size < 1_000_000  # the graph only
    assert store.stat().st_size < 30_000_000  # EfficientNet-Lite0's 19 MB once, not four times
    copy = tmp_path / "zoo"
    copy.mkdir()
    for name in ("saliency_gradcam.onnx", "saliency_gradcam.json", store.name, store.name + ".index", "imagenet_classes.txt"):
        shutil.copyfile(ZOO / name, copy / name)
    data = bytearray((copy / store.name).read_bytes())
    data[1000] ^= 0xFF
    (copy / store.name).write_bytes(data)
    with pytest.raises(CardError, match="does not match"):
        load_card_for_onnx(copy / "saliency_gradcam.onnx")


@pytest.mark.parametrize("exact", [False, True])
def test_the_gate_holds_exact_methods_to_every_pixel(exact):
    """One pixel off by 1% of the range: within the median and mean rules, not the max rule."""
    expected = {"logits": np.arange(1000, dtype=np.float32), "class": np.array([3]), "saliency": np.zeros((224, 224), np.float32)}
    outputs = {**expected, "saliency": expected["saliency"].copy()}
    outputs["saliency"][100, 100] = 0.01
    parity = compare(outputs, expected, exact=exact)
    assert isinstance(parity, Parity) and parity.saliency_max_error == pytest.approx(0.01)
    assert parity.ok is not exact
    assert {m for m in METHODS if method_class(m).exact} == {"gradcam", "occlusion"}


@pytest.mark.slow
def test_bench_deletion_prints_its_table_and_writes_json(tmp_path, capsys):
    """`stylecam bench deletion` as docs/guides/explain.md gives it, on two photos and a short schedule."""
    from stylecam.cli import main as cli

    out, markdown = tmp_path / "deletion.json", tmp_path / "deletion.md"
    argv = [str(CONTENT / "bsds"), "--count", "2", "--steps", "4", "--methods", "gradcam", "--threads", "1",
            "--json", str(out), "--markdown", str(markdown)]
    assert cli(["bench", "deletion", *argv]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["summary"]) == {"gradcam", RANDOM} and len(result["images"]) == 2
    for name, row in result["summary"].items():
        assert 0 <= row["mean_auc"] <= 1 and f"| {name} | {row['mean_auc']:.3f} |" in printed
    assert "deletion AUC (lower is better), 2 photos, efficientnet_lite0, 4 steps" in printed
    written = markdown.read_text().splitlines()
    assert [line.split(" | ")[0] for line in written if line.startswith("|")][2:] == ["| gradcam", f"| {RANDOM}"]
    assert written[-1].startswith(f"Made by `stylecam bench deletion {' '.join(argv)}` on ")
