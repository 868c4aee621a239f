"""The export gate (export.verify) on tiny known-answer graphs: what passes, what fails,
and what the failure says. Every export (style, saliency, lens) goes through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylecam.export.verify import MaxError, VerificationError, max_error, verify


def write_graph(path: Path, op: str = "Identity", dtype: str = "float32", outputs: int = 1) -> Path:
    """x -> y (and z, the same) through one ``op`` node."""
    import onnx
    from onnx import TensorProto, helper

    kind = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8}[dtype]
    names = ["y", "z"][:outputs]
    nodes = [helper.make_node(op, ["x"], [name]) for name in names]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", kind, ["N"])],
                              [helper.make_tensor_value_info(name, kind, ["N"]) for name in names])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what this onnxruntime reads
    onnx.save(model, str(path))
    return path


CASES = [{"x": np.array([0.0, 1.0, -2.5], np.float32)}, {"x": np.arange(7, dtype=np.float32)}]


def test_a_graph_that_agrees_passes_with_a_comparison_per_case(tmp_path):
    graph = write_graph(tmp_path / "g.onnx")
    checked = verify(graph, CASES, lambda feeds: {"y": feeds["x"] + 0.25}, max_error(0.25))
    assert [c.errors for c in checked] == [{"y": 0.25}, {"y": 0.25}]  # exactly at the tolerance still passes
    assert all(isinstance(c, MaxError) and c.ok for c in checked)


def test_a_graph_past_its_tolerance_fails_naming_the_file_the_input_and_the_error(tmp_path):
    graph = write_graph(tmp_path / "g.onnx")
    wanted = lambda feeds: {"y": feeds["x"] + (0.5 if len(feeds["x"]) == 7 else 0.0)}  # noqa: E731 (the second case only)
    with pytest.raises(VerificationError) as e:
        verify(graph, CASES, wanted, max_error(0.25))
    assert str(e.value) == "g.onnx on a (7,) input: max |onnxruntime - torch| = 'y' 0.5 > tolerance 0.25"


def test_every_output_is_compared_and_shown(tmp_path):
    graph = write_graph(tmp_path / "g.onnx", outputs=2)
    with pytest.raises(VerificationError, match=r"= 'y' 0, 'z' 3 > tolerance 1$"):
        verify(graph, CASES[:1], lambda feeds: {"y": feeds["x"], "z": feeds["x"] + 3}, max_error(1))
    seen = []
    verify(graph, CASES[:1], lambda feeds: {"z": feeds["x"]}, lambda got, wanted: seen.append((set(got), set(wanted))) or MaxError({}, 0))
    assert seen == [({"y", "z"}, {"z"})]  # the comparison gets every output, and the reference's


@pytest.mark.parametrize("wanted, shown", [(lambda x: x[None], r"\(1, 3\)"), (lambda x: np.zeros(7, np.float32), r"\(7,\)"),
                                           (lambda x: x[:2], r"\(2,\)")])
def test_a_shape_the_reference_does_not_give_fails(tmp_path, wanted, shown):
    graph = write_graph(tmp_path / "g.onnx")
    with pytest.raises(VerificationError, match=r"output 'y': onnxruntime gives shape \(3,\), torch " + shown):
        verify(graph, CASES[:1], lambda feeds: {"y": wanted(feeds["x"])}, max_error(100))


def test_a_graph_the_onnx_checker_rejects_fails_before_running(tmp_path):
    import onnx

    graph = write_graph(tmp_path / "g.onnx", op="NoSuchOp")
    with pytest.raises(onnx.checker.ValidationError) as raised:
        onnx.checker.check_model(str(graph), full_check=True)
    called = []
    with pytest.raises(VerificationError) as e:
        verify(graph, CASES, lambda feeds: called.append(1) or {}, max_error(1))
    assert str(e.value) == f"onnx checker rejected the graph: {str(raised.value).splitlines()[0]}"  # its first line only
    assert not called


def test_the_checker_runs_its_full_check_with_shape_inference(tmp_path):
    """A graph whose declared output type contradicts its node passes the plain checker;
    only the full check (strict shape inference) refuses it."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    bad = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
                            [helper.make_tensor_value_info("y", TensorProto.UINT8, ["N"])])
    model = helper.make_model(bad, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "g.onnx"))
    onnx.checker.check_model(str(tmp_path / "g.onnx"))  # the plain check lets it through
    with pytest.raises(VerificationError, match="onnx checker rejected the graph"):
        verify(tmp_path / "g.onnx", CASES, lambda feeds: {"y": feeds["x"]}, max_error(1))


def test_uint8_errors_are_distances_not_wrapped_bytes(tmp_path):
    graph = write_graph(tmp_path / "g.onnx", dtype="uint8")
    frame = {"x": np.array([0, 255, 7], np.uint8)}
    with pytest.raises(VerificationError, match="'y' 255 > tolerance 1"):
        verify(graph, [frame], lambda feeds: {"y": np.array([255, 255, 7], np.uint8)}, max_error(1))
    assert verify(graph, [frame], lambda feeds: {"y": np.array([1, 254, 7], np.uint8)}, max_error(1))[0].errors == {"y": 1.0}


def test_max_error_of_an_empty_output_is_zero():
    compare = max_error(0.0)
    empty = np.zeros((0, 3), np.float32)
    assert compare({"y": empty}, {"y": empty}) == MaxError({"y": 0.0}, 0.0)
    assert compare({"y": empty}, {"y": empty}).ok
    assert not MaxError({"y": 0.0, "z": 0.1}, 0.05).ok and MaxError({"y": 0.05}, 0.05).ok
    with pytest.raises(AttributeError):  # frozen: a verdict is not edited after the fact
        MaxError({}, 0.0).tolerance = 1.0  # type: ignore[misc]
