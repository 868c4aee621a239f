"""Tiny ONNX models with answers known by hand, and their cards, for the server tests.

Built with ``onnx.helper`` (no torch), so they honour the card contract exactly:
- ``invert`` (style):        stylized = 255 - frame
- ``tint`` (multistyle):     styles ("red", "blue"), whose style vectors are RED = (1, .25, .25) and
                             BLUE = (.25, .25, 1); stylized = frame * style per channel, clipped to
                             0..255, so blend weights give frame * (w_red * RED + w_blue * BLUE)
- ``fake-vanilla`` (saliency, method vanilla): a fixed left-to-right ramp as saliency, fixed
                             ``logits`` over LABELS (class "c3" wins)
- ``fake-gradcam`` (saliency, method gradcam): a fixed top-to-bottom ramp, the same logits

``slow_down`` makes any loaded model deliberately slow (what no real graph can be on demand).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stylecam.server.model_card import ModelCard, TensorSpec, encode_vector, sha256_of, write_card

OPSET = 17
SALIENCY_SIZE = (28, 28)
LABELS = ("c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7")
LOGITS = np.array([0.0, 1.0, 2.0, 5.0, 3.0, 0.5, 4.0, -1.0], np.float32)  # top-5: c3 c6 c4 c2 c1
RED = (1.0, 0.25, 0.25)
BLUE = (0.25, 0.25, 1.0)

FRAME = TensorSpec("frame", "uint8", ("H", "W", 3), "RGB 0..255")
STYLIZED = TensorSpec("stylized", "uint8", ("H", "W", 3), "RGB 0..255")


def _save(graph, directory: Path, name: str, card_fields: dict) -> ModelCard:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(directory) / f"{name}.onnx"
    onnx.save(model, str(path))
    card = ModelCard(name=name, onnx=path.name, sha256=sha256_of(path), **card_fields)
    write_card(card, directory)
    return card


def _frame_input():
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info("frame", TensorProto.UINT8, ["H", "W", 3])


def _stylized_output():
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info("stylized", TensorProto.UINT8, ["H", "W", 3])


def write_invert(directory: Path) -> ModelCard:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["frame"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["c255", "x"], ["y"]),
        helper.make_node("Cast", ["y"], ["stylized"], to=TensorProto.UINT8),
    ]
    init = [numpy_helper.from_array(np.array(255.0, np.float32), "c255")]
    graph = helper.make_graph(nodes, "invert", [_frame_input()], [_stylized_output()], init)
    return _save(graph, directory, "invert", dict(kind="style", inputs=(FRAME,), outputs=(STYLIZED,), arch="test-invert"))


def write_tint(directory: Path) -> ModelCard:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["frame"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "style"], ["y"]),
        helper.make_node("Clip", ["y", "lo", "hi"], ["z"]),
        helper.make_node("Cast", ["z"], ["stylized"], to=TensorProto.UINT8),
    ]
    init = [
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(255.0, np.float32), "hi"),
    ]
    style = helper.make_tensor_value_info("style", TensorProto.FLOAT, [3])
    graph = helper.make_graph(nodes, "tint", [_frame_input(), style], [_stylized_output()], init)
    inputs = (FRAME, TensorSpec("style", "float32", (3,), "the style vector: a gain per channel"))
    vectors = {name: {"vector": encode_vector(np.array(gains, np.float32)), "provenance": {"learnt": "by hand"}}
               for name, gains in (("red", RED), ("blue", BLUE))}
    return _save(graph, directory, "tint", dict(kind="multistyle", inputs=inputs, outputs=(STYLIZED,), styles=("red", "blue"),
                                                arch="test-tint", style_vectors=vectors))


def _ramp(axis: int) -> np.ndarray:
    h, w = SALIENCY_SIZE
    ramp = np.linspace(0.0, 1.0, w if axis == 1 else h, dtype=np.float32)
    return np.broadcast_to(ramp[None, :] if axis == 1 else ramp[:, None], (h, w)).copy()


def write_fake_saliency(directory: Path, method: str) -> ModelCard:
    """Outputs do not depend on the frame; the frame is still read (ReduceMax * 0) so the
    graph has a real data path like an exported one."""
    from onnx import TensorProto, helper, numpy_helper

    name = f"fake-{method}"
    (Path(directory) / f"{name}.labels.txt").write_text("\n".join(LABELS) + "\n")
    nodes = [
        helper.make_node("Cast", ["frame"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["ramp", "z"], ["saliency"]),
    ]
    init = [
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(_ramp(1 if method == "vanilla" else 0), "ramp"),
    ]
    h, w = SALIENCY_SIZE
    outputs = [helper.make_tensor_value_info("saliency", TensorProto.FLOAT, [h, w])]
    specs = [TensorSpec("saliency", "float32", (h, w), "0..1")]
    init.append(numpy_helper.from_array(LOGITS, "fixed_logits"))
    nodes.append(helper.make_node("Identity", ["fixed_logits"], ["logits"]))
    outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [len(LABELS)]))
    specs.append(TensorSpec("logits", "float32", (len(LABELS),), "class scores"))
    graph = helper.make_graph(nodes, name, [_frame_input()], outputs, init)
    fields = dict(kind="saliency", inputs=(FRAME,), outputs=tuple(specs), method=method, classifier="test", labels=f"{name}.labels.txt", input_size=SALIENCY_SIZE, arch="test-saliency")
    return _save(graph, directory, name, fields)


def write_tiny_zoo(directory: Path) -> list[ModelCard]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [write_invert(directory), write_tint(directory), write_fake_saliency(directory, "vanilla"), write_fake_saliency(directory, "gradcam")]


def expected_top5() -> list[str]:
    return [LABELS[i] for i in np.argsort(-LOGITS)[:5]]


class SlowSession:
    """An onnxruntime session that sleeps ``delay`` seconds before each run (costing no
    CPU) and counts its runs; everything else is the real session's."""

    def __init__(self, session, delay: float) -> None:
        self._session = session
        self.delay = delay
        self.runs = 0

    def _stall(self) -> None:
        time.sleep(self.delay)
        self.runs += 1

    def run(self, *args, **kwargs):
        self._stall()
        return self._session.run(*args, **kwargs)

    def run_with_iobinding(self, io) -> None:
        self._stall()
        self._session.run_with_iobinding(io)

    def __getattr__(self, name: str):
        return getattr(self._session, name)


def slow_down(registry, name: str, delay: float) -> SlowSession:
    """Load ``name`` from a server Registry and make each of its runs take ``delay`` s longer."""
    model = registry.model(name)
    model.session = SlowSession(model.session, delay)
    return model.session
