"""An export is not done until it is verified: onnx checker, then onnxruntime vs torch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch


class VerificationError(RuntimeError):
    """The exported graph is invalid or disagrees with PyTorch; nothing was written."""


def check_graph(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # onnx raises ValidationError and shape-inference errors
        raise VerificationError(f"onnx checker rejected the graph: {str(e).splitlines()[0]}") from None


def _as_tuple(value: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (value,) if isinstance(value, torch.Tensor) else tuple(value)


def parity(
    path: Path, reference: Callable[..., torch.Tensor | Sequence[torch.Tensor]], cases: list[tuple[torch.Tensor, ...]],
    input_names: list[str], output_names: list[str], tolerance: dict[str, float],
) -> dict[str, float]:
    """Run every case through onnxruntime (CPU) and ``reference``; the worst |error| per output.

    Raises VerificationError naming the output, the case's input shape and both numbers when
    an output's error exceeds its tolerance.
    """
    import onnxruntime as ort

    check_graph(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    worst = dict.fromkeys(output_names, 0.0)
    for case in cases:
        feeds = {name: t.numpy() for name, t in zip(input_names, case)}
        got = session.run(output_names, feeds)
        with torch.no_grad():
            want = _as_tuple(reference(*case))
        for name, g, w in zip(output_names, got, want):
            w = w.numpy()
            if g.shape != w.shape:
                raise VerificationError(f"output {name!r}: onnxruntime gives shape {g.shape}, torch {w.shape}")
            error = float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max()) if g.size else 0.0
            worst[name] = max(worst[name], error)
            if error > tolerance[name]:
                raise VerificationError(
                    f"output {name!r} for input {tuple(case[0].shape)}: max |onnxruntime - torch| = {error:.4g} "
                    f"> tolerance {tolerance[name]:.4g}"
                )
    return worst
