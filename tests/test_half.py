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
from stylecam.server.model_card import ModelCard, iter_cards
from stylecam.server.ort_model import OrtModel
from stylecam.server.registry import Registry, scan

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "models" / "zoo"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "stylecam" / "fp16"


def shipped(name: str) -> tuple[ModelCard, Path]:
    card = next(c for _, c in iter_cards(ZOO) if c.name == name)
    return card, ZOO / card.onnx


def write_coarse(directory: Path) -> tuple[ModelCard, Path]:
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
    return card, directory / card.onnx


def test_the_shipped_style_net_gets_a_checked_fp16_twin_made_once(cache, caplog, monkeypatch):
    card, onnx = shipped("multistyle_paint")
    with caplog.at_level(logging.INFO, logger="stylecam.server.half"):
        twin, twin_onnx = half.half_of(card, onnx, "cpu")
    assert twin.precision == "fp16" and twin_onnx == cache / f"{card.sha256}.onnx" and twin.source["fp16_of"] == card.sha256
    assert twin.styles == card.styles and twin.name == card.name
    assert [r.message for r in caplog.records if "made an fp16 graph of multistyle_paint" in r.message]
    assert sorted(cache.iterdir()) == [twin_onnx.with_suffix(".json"), twin_onnx]  # nothing staged is left behind
    import onnx as onnx_package

    weights = {t.data_type for t in onnx_package.load(str(twin_onnx)).graph.initializer if len(t.dims) == 4}
    assert weights == {onnx_package.TensorProto.FLOAT16}
    fp32, fp16 = OrtModel.load(onnx, "cpu"), OrtModel.load(twin_onnx, "cpu")
    frame = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    vector = card.vector_table()[2]
    a, b = (m.run(frame=frame, style=vector)["stylized"].astype(int) for m in (fp32, fp16))
    assert np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.2

    def never(source: Path, target: Path) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(half, "convert", never)
    assert half.half_of(card, onnx, "cpu") == (twin, twin_onnx)  # a later start takes the cached graph


def test_a_twin_that_breaks_the_parity_rule_is_not_served_nor_cached(cache, tmp_path, caplog):
    card, onnx = write_coarse(tmp_path)
    with caplog.at_level(logging.WARNING, logger="stylecam.server.half"):
        assert half.half_of(card, onnx, "cpu") == (card, onnx)
    assert "coarse stays fp32: its fp16 conversion differs by 3 levels on cpu" in caplog.text
    assert not any(cache.iterdir())


def test_only_a_cuda_server_converts_and_only_float32_style_graphs(cache, tmp_path):
    """``scan`` marks style graphs for a CUDA device (not for the CPU, not with --precision
    fp32, not saliency); the registry's first load of a marked one serves the twin."""
    for path in [ZOO / "multistyle_paint.onnx", ZOO / "multistyle_paint.json", ZOO / "multistyle_paint_int8.onnx",
                 ZOO / "multistyle_paint_int8.json", ZOO / "saliency_gradcam.onnx", ZOO / "saliency_gradcam.json"]:
        (tmp_path / path.name).symlink_to(path)
    marked = {p: {n: e.half for n, e in scan(tmp_path, "cuda", p).items()} for p in ("auto", "fp16", "fp32")}
    assert marked["auto"] == marked["fp16"] == {"multistyle_paint": True, "saliency_gradcam": False}
    assert marked["fp32"] == {"multistyle_paint": False, "saliency_gradcam": False}
    assert not any(e.half for e in scan(tmp_path, "cpu").values())
    entries = scan(tmp_path, "cuda")
    registry = Registry(entries, "cpu", {})  # the CUDA device's choice, loaded on this machine's CPU
    registry.model("multistyle_paint")
    assert registry.entries["multistyle_paint"].card.precision == "fp16"
    assert [d["precision"] for d in registry.describe() if d["name"] == "multistyle_paint"] == ["fp16"]
