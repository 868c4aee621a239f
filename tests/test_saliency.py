import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from style_helpers import CONTENT
from torch import nn

from stylecam.export.attribution import METHODS, GuidedBackprop, Vanilla, create_method, normalise_map
from stylecam.export.bench.deletion import RANDOM, pick, run, summary
from stylecam.export.gradients import trace_joint
from stylecam.export.saliency import EXACT_METHODS, Parity, compare, export_saliency, reference
from stylecam.models.data import read_rgb
from stylecam.models.factory import create_model
from stylecam.server.model_card import CardError, load_card_for_onnx

PHOTOS = [CONTENT / "coco" / "000000000285.jpg", CONTENT / "bsds" / "253027.jpg"]  # brown bear 640x480, zebras 481x321


@pytest.fixture(scope="module")
def lite0():
    torch.set_num_threads(2)
    return create_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("saliency")
    for method in METHODS:
        export_saliency(method, "efficientnet_lite0", out)
    return out


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


def test_normalise_map_divides_by_the_99th_percentile():
    raw = torch.arange(1.0, 201.0).reshape(10, 20)  # 200 values: the 2nd largest (k = ceil(0.01*200)) is 199
    out = normalise_map(raw)
    assert out[0, 0].item() == pytest.approx(1 / 199) and out.max().item() == 1.0
    assert out.reshape(-1)[-2].item() == pytest.approx(1.0)


# --- the exported graphs -------------------------------------------------------------------


# one photo per method keeps this quick: the bear explained as its top-1, the zebras as class 340
CASES = {"vanilla": (PHOTOS[0], -1), "smoothgrad": (PHOTOS[0], -1), "guided": (PHOTOS[1], 340), "gradcam": (PHOTOS[1], 340)}


@pytest.mark.parametrize("method", METHODS)
def test_exported_method_matches_torch_autograd(zoo, lite0, method):
    import onnxruntime as ort

    path = zoo / f"saliency_{method}.onnx"
    card = load_card_for_onnx(path)
    assert (card.kind, card.method, card.classifier, card.input_size) == ("saliency", method, "efficientnet_lite0", (224, 224))
    assert (zoo / card.labels).read_text().splitlines()[340] == "zebra"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    photo, target = CASES[method]
    rgb = read_rgb(photo)
    names = ["logits", "saliency", "class"]
    outputs = dict(zip(names, session.run(names, {"frame": rgb, "target": np.array([target], np.int64)})))
    parity = compare(outputs, reference(create_method(method, lite0), rgb, target), exact=method in EXACT_METHODS)
    print(method, photo.name, parity)
    assert outputs["saliency"].shape == (224, 224) and outputs["saliency"].dtype == np.float32
    assert 0.0 <= outputs["saliency"].min() and outputs["saliency"].max() <= 1.0
    assert parity.ok, parity  # for Grad-CAM, at every pixel
    if target >= 0:
        assert int(outputs["class"][0]) == target


def test_cards_record_the_verification(zoo):
    card = json.loads((zoo / "saliency_vanilla.json").read_text())
    assert [p["same_class"] for p in card["source"]["parity"]] == [True, True]
    assert card["source"]["licence"] == "Apache-2.0"


@pytest.mark.timeout(1500)  # about 5 minutes on a quiet 2-core machine; far more beside other work
def test_every_method_beats_random_on_deletion(lite0):
    photos = pick([CONTENT / "coco", CONTENT / "bsds"], 8)  # spread evenly, as the benchmark picks them
    table = summary(run(photos, "efficientnet_lite0", METHODS, steps=8, seed=0))
    for method in METHODS:
        assert table[method]["mean_auc"] < table[RANDOM]["mean_auc"], table


def test_methods_share_one_weights_store(zoo, tmp_path):
    store = zoo / "efficientnet_lite0.weights"
    for method in METHODS:
        card = load_card_for_onnx(zoo / f"saliency_{method}.onnx")
        assert card.external_data[store.name]["bytes"] <= store.stat().st_size
        assert (zoo / f"saliency_{method}.onnx").stat().st_size < 1_000_000  # the graph only
    assert store.stat().st_size < 30_000_000  # EfficientNet-Lite0's 19 MB once, not four times
    copy = tmp_path / "zoo"
    shutil.copytree(zoo, copy)
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
    assert EXACT_METHODS == {"gradcam"}


def test_bench_deletion_prints_its_table_and_writes_json(tmp_path, capsys):
    """`stylecam bench deletion` as the README gives it, on two photos and a short schedule."""
    from stylecam.export.cli import main as cli

    out = tmp_path / "deletion.json"
    assert cli(["bench", "deletion", str(CONTENT / "bsds"), "--count", "2", "--steps", "4", "--methods", "gradcam",
                "--threads", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["summary"]) == {"gradcam", RANDOM} and len(result["images"]) == 2
    for name, row in result["summary"].items():
        assert 0 <= row["mean_auc"] <= 1 and f"{name:<12}{row['mean_auc']:>8.3f}" in printed
    assert "deletion AUC (lower is better), 2 photos, efficientnet_lite0, 4 steps" in printed
