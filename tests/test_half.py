"""fp16 graphs made on the serving machine (``server/half.py``): the zoo ships fp32 and int8
only, and a CUDA server converts a float32 style graph at its first load, checks it against
the float32 graph by the export's rule, and caches it. onnxruntime's CPU provider runs fp16
graphs too (it casts around the kernels it lacks), so all of this runs here."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from stylecam.server import half
from stylecam.server.model_card import iter_cards
from stylecam.server.ort_model import OrtModel
from stylecam.server.registry import Entry, Registry, scan

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "models" / "zoo"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "stylecam" / "fp16"


def shipped(name: str) -> Entry:
    card = next(c for _, c in iter_cards(ZOO) if c.name == name)
    return Entry(card, ZOO / card.onnx, half=True)


def write_coarse(directory: Path) -> Entry:
    """stylized = clip(frame + 8195 - 8180): float16 stores 8195 as 8192, so the twin is 3
    levels off everywhere (whether a device computes in float16 or, as onnxruntime's CPU
    provider does for lack of kernels, in float32 from the float16 constants)."""
    from onnx import TensorProto, helper, numpy_helper
    from tiny_models import FRAME, STYLIZED, _frame_input, _save, _stylized_output

    nodes = [helper.make_node("Cast", ["frame"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "a"], ["y"]), helper.make_node("Sub", ["y", "b"], ["z"]),
             helper.make_node("Clip", ["z", "lo", "hi"], ["c"]), helper.make_node("Cast", ["c"], ["stylized"], to=TensorProto.UINT8)]
    constants = {"a": 8195.0, "b": 8180.0, "lo": 0.0, "hi": 255.0}
    graph = helper.make_graph(nodes, "coarse", [_frame_input()], [_stylized_output()],
                              [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in constants.items()])
    card = _save(graph, directory, "coarse", dict(kind="style", inputs=(FRAME,), outputs=(STYLIZED,), arch="test-coarse"))
    return Entry(card, directory / card.onnx, half=True)


def test_the_shipped_style_net_gets_a_checked_fp16_twin_made_once(cache, caplog, monkeypatch):
    entry = shipped("multistyle_rt")
    with caplog.at_level(logging.INFO, logger="stylecam.server.half"):
        twin = half.half_of(entry, "cpu")
    assert twin.card.precision == "fp16" and not twin.half and twin.onnx == cache / f"{entry.card.sha256}.onnx"
    assert twin.card.styles == entry.card.styles and twin.card.name == entry.card.name
    assert [r.message for r in caplog.records if "made an fp16 graph of multistyle_rt" in r.message]
    assert sorted(cache.iterdir()) == [twin.onnx.with_suffix(".json"), twin.onnx]  # nothing staged is left behind
    import onnx

    weights = {t.data_type for t in onnx.load(str(twin.onnx)).graph.initializer if len(t.dims) == 4}
    assert weights == {onnx.TensorProto.FLOAT16}
    fp32, fp16 = OrtModel.load(entry.onnx, "cpu"), OrtModel.load(twin.onnx, "cpu")
    frame = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    vector = entry.card.vector_table()[2]
    a, b = (m.run(frame=frame, style=vector)["stylized"].astype(int) for m in (fp32, fp16))
    assert np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.2

    def never(source: Path, target: Path) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(half, "convert", never)
    assert half.half_of(entry, "cpu").onnx == twin.onnx  # a later start takes the cached graph


def test_a_twin_that_breaks_the_parity_rule_is_not_served_nor_cached(cache, tmp_path, caplog):
    entry = write_coarse(tmp_path)
    with caplog.at_level(logging.WARNING, logger="stylecam.server.half"):
        kept = half.half_of(entry, "cpu")
    assert kept.card.precision == "fp32" and kept.onnx == entry.onnx and not kept.half
    assert "coarse stays fp32: its fp16 conversion differs by 3 levels on cpu" in caplog.text
    assert not any(cache.iterdir())


def test_only_a_cuda_server_converts_and_only_float32_style_graphs(cache, tmp_path):
    """``scan`` marks style graphs for a CUDA device (not for the CPU, not with --precision
    fp32, not saliency); the registry's first load of a marked one serves the twin."""
    for path in [ZOO / "multistyle_rt.onnx", ZOO / "multistyle_rt.json", ZOO / "multistyle_rt_int8.onnx",
                 ZOO / "multistyle_rt_int8.json", ZOO / "saliency_gradcam.onnx", ZOO / "saliency_gradcam.json"]:
        (tmp_path / path.name).symlink_to(path)
    marked = {p: {n: e.half for n, e in scan(tmp_path, "cuda", p).items()} for p in ("auto", "fp16", "fp32")}
    assert marked["auto"] == marked["fp16"] == {"multistyle_rt": True, "saliency_gradcam": False}
    assert marked["fp32"] == {"multistyle_rt": False, "saliency_gradcam": False}
    assert not any(e.half for e in scan(tmp_path, "cpu").values())
    entries = scan(tmp_path, "cuda")
    registry = Registry(entries, "cpu", {})  # the CUDA device's choice, loaded on this machine's CPU
    registry.model("multistyle_rt")
    assert registry.entries["multistyle_rt"].card.precision == "fp16"
    assert [d["precision"] for d in registry.describe() if d["name"] == "multistyle_rt"] == ["fp16"]
