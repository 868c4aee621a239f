"""export/quantize.py on its own: which photos calibrate and check an int8 graph, how a
multi-style graph's calibration sees every style, which convolutions stay float, and the
statistical gate. Small synthetic photos and an untrained net keep it fast."""

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from style_helpers import make_checkpoint

from stylecam.export import command, quantize
from stylecam.export.verify import VerificationError
from stylecam.models.data import is_held_out
from stylecam.server.model_card import FRAME, STYLE

TRAINING, HELD_OUT = 40, 10


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """TRAINING + HELD_OUT textured photos, 64 wide; photo k of its split is 20 + k high, so
    its height after scaling names it."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    made = {False: 0, True: 0}
    for n in range(2000):
        name = f"p{n:04d}.png"
        split = is_held_out(Path(name))
        if made[split] == (HELD_OUT if split else TRAINING):
            continue
        photo = rng.integers(0, 256, (20 + made[split], 64, 3), dtype=np.uint8)
        cv2.imwrite(str(root / name), cv2.GaussianBlur(photo, (5, 5), 0))
        made[split] += 1
        if made == {False: TRAINING, True: HELD_OUT}:
            return root
    raise AssertionError("not enough names")


def _which(frames: list[np.ndarray], side: int) -> list[int]:
    """The split index of each scaled photo, read back from its height."""
    assert all(max(f.shape[:2]) == side and f.shape[2] == 3 and f.dtype == np.uint8 for f in frames)
    return [round(f.shape[0] * 64 / side) - 20 for f in frames]


def test_photos_are_spread_evenly_over_one_split_first_and_last_included(photos):
    assert _which(quantize._photos([photos], False, 5, 128), 128) == [0, 10, 20, 29, 39]
    assert _which(quantize._photos([photos], True, 4, 96), 96) == [0, 3, 6, 9]
    assert _which(quantize._photos([photos], False, 2, 64), 64) == [0, 39]
    assert _which(quantize._photos([photos], False, 1, 64), 64) == [0]


def test_photos_asked_for_more_than_a_split_has_are_each_taken_once(photos):
    assert _which(quantize._photos([photos], True, 25, 64), 64) == list(range(HELD_OUT))


def test_feeds_cycle_a_multistyle_graphs_styles_and_a_single_style_graph_gets_frames_only():
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(7)]
    styles = np.arange(12, dtype=np.float32).reshape(3, 4)
    feeds = quantize._feeds(frames, styles)
    assert [f[FRAME][0, 0, 0] for f in feeds] == list(range(7))
    assert [int(f[STYLE][0]) // 4 for f in feeds] == [0, 1, 2, 0, 1, 2, 0]
    assert all(set(f) == {FRAME} for f in quantize._feeds(frames, None))


@pytest.fixture(scope="module")
def float_graph(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lite")
    ckpt = make_checkpoint(tmp / "ckpt.pt", "lite", {}, ["wave"])
    return ckpt, command.export_style(ckpt, tmp / "zoo").onnx


@pytest.fixture(scope="module")
def int8_graph(float_graph, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "lite_int8.onnx"
    return out, quantize.quantize(float_graph[1], out, [photos], None)


@pytest.mark.slow
def test_quantize_calibrates_on_the_training_split_and_keeps_first_and_last_conv_float(int8_graph):
    path, count = int8_graph
    assert count == 28 < TRAINING
    graph = onnx.load(str(path)).graph
    made_by = {out: node for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    int8 = [made_by.get(node.input[1]) is not None and made_by[node.input[1]].op_type == "DequantizeLinear"
            for node in convs]
    assert len(int8) > 3 and int8[0] is False and int8[-1] is False and all(int8[1:-1])
    # per-channel weights: one scale per output channel of each int8 conv
    sizes = {t.name: list(t.dims) for t in graph.initializer}
    for conv in convs[1:-1]:
        weight = made_by[conv.input[1]]
        assert sizes[weight.input[1]] == sizes[weight.input[0]][:1] and sizes[weight.input[0]][0] > 1


@pytest.mark.slow  # a real export in the module's float_graph fixture
def test_quantize_counts_the_photos_it_had(float_graph, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for i in range(5):
        name = next(f"q{i}_{n}.png" for n in range(100) if not is_held_out(Path(f"q{i}_{n}.png")))
        cv2.imwrite(str(few / name), np.full((30 + i, 40, 3), 40 * i, np.uint8))
    assert quantize.quantize(float_graph[1], tmp_path / "g.onnx", [few], None) == 5


def _ramp(frame: np.ndarray) -> np.ndarray:
    """Every level 0-255 over and over: a reference above and below the graph's output alike."""
    return (np.arange(frame.size) * 7 % 256).astype(np.uint8).reshape(frame.shape)


class Ramp(torch.nn.Module):
    """A stand-in float32 network whose answer is known: the ramp, whatever the photo."""

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(_ramp(frame.numpy()))


@pytest.fixture(scope="module")
def ramp_error(int8_graph, photos) -> np.ndarray:
    """|graph - ramp| on the 8 held-out photos at 320 px, the figures docs/design/export-gate.md states, computed here."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(int8_graph[0]), providers=["CPUExecutionProvider"])
    frames = quantize._photos([photos], True, 8, 320)
    got = [session.run(None, {FRAME: f})[0].astype(np.int32) for f in frames]
    return np.concatenate([np.abs(g - _ramp(f)).ravel() for g, f in zip(got, frames)])


@pytest.mark.slow
def test_int8_error_is_measured_on_held_out_photos_at_its_side(int8_graph, photos, ramp_error, monkeypatch):
    monkeypatch.setattr(quantize, "MEAN_TOLERANCE", 1e9)
    monkeypatch.setattr(quantize, "P99_TOLERANCE", 1e9)
    path, _ = int8_graph
    error = quantize.int8_error(path, Ramp(), [photos], None)
    want = ramp_error
    assert np.percentile(want, 98) < np.percentile(want, 99) < np.percentile(want, 100)  # the 99th is told apart
    assert error == pytest.approx({"mean": want.mean(), "p99": np.percentile(want, 99), "max": want.max(),
                                   "photos": 8, "long_side": 320})


@pytest.mark.slow
@pytest.mark.parametrize("limit", ["MEAN_TOLERANCE", "P99_TOLERANCE"])
def test_int8_error_past_either_tolerance_is_refused_and_at_it_passes(int8_graph, photos, ramp_error, monkeypatch, limit):
    path, _ = int8_graph
    want = ramp_error
    measured = {"MEAN_TOLERANCE": want.mean(), "P99_TOLERANCE": np.percentile(want, 99)}
    for name, value in measured.items():
        monkeypatch.setattr(quantize, name, 1e9 if name != limit else float(value))
    assert quantize.int8_error(path, Ramp(), [photos], None)["photos"] == 8
    monkeypatch.setattr(quantize, limit, float(measured[limit]) - 0.01)
    with pytest.raises(VerificationError, match="int8 graph too far from float32 on held-out photos"):
        quantize.int8_error(path, Ramp(), [photos], None)


def test_the_docs_state_the_gate_as_the_code_holds_it():
    """The figures users read are the ones enforced: photos, sides and both tolerances, on
    the docs page that states the export gate."""
    page = " ".join((Path(__file__).resolve().parents[1] / "docs" / "design" / "export-gate.md").read_text().split())
    q = quantize
    assert f"calibrated on {q.CALIBRATION_PHOTOS} training photos at {q.CALIBRATION_SIDE} px" in page
    assert f"on {q.VERIFY_PHOTOS} held-out photos at {q.VERIFY_SIDE} px" in page
    assert f"mean |difference| at most {q.MEAN_TOLERANCE:g} levels and 99th percentile at most {q.P99_TOLERANCE:g}" in page
