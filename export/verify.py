"""An export is not done until it is verified: onnx checker, then onnxruntime vs torch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np


class VerificationError(RuntimeError):
    """The exported graph is invalid or disagrees with PyTorch; nothing was written."""


def check_graph(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # onnx raises ValidationError and shape-inference errors
        raise VerificationError(f"onnx checker rejected the graph: {str(e).splitlines()[0]}") from None


class Comparison(Protocol):
    """How one case compared; ``str`` of it says so in the error message."""

    @property
    def ok(self) -> bool: ...


C = TypeVar("C", bound=Comparison)
Feeds = dict[str, np.ndarray]


def verify(path: Path, cases: Sequence[Feeds], reference: Callable[[Feeds], Feeds],
           compare: Callable[[Feeds, Feeds], C]) -> list[C]:
    """The one verifier of every export: onnx checker, then each case through onnxruntime
    (CPU) and through ``reference`` (PyTorch), judged by ``compare(got, wanted)``.

    Raises VerificationError naming the graph, the case's first input shape and the
    comparison when one is not ``ok``; returns every comparison otherwise.
    """
    import onnxruntime as ort

    check_graph(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = []
    for feeds in cases:
        got = dict(zip(names, session.run(names, feeds)))
        wanted = reference(feeds)
        for name, w in wanted.items():
            if got[name].shape != w.shape:
                raise VerificationError(f"output {name!r}: onnxruntime gives shape {got[name].shape}, torch {w.shape}")
        result = compare(got, wanted)
        if not result.ok:
            raise VerificationError(f"{path.name} on a {next(iter(feeds.values())).shape} input: {result}")
        results.append(result)
    return results


@dataclass(frozen=True)
class MaxError:
    """The largest |onnxruntime - torch| of each output, against one tolerance."""

    errors: dict[str, float]
    tolerance: float

    @property
    def ok(self) -> bool:
        return all(e <= self.tolerance for e in self.errors.values())

    def __str__(self) -> str:
        worst = ", ".join(f"{name!r} {error:.4g}" for name, error in self.errors.items())
        return f"max |onnxruntime - torch| = {worst} > tolerance {self.tolerance:.4g}"


def max_error(tolerance: float) -> Callable[[Feeds, Feeds], MaxError]:
    def compare(got: Feeds, wanted: Feeds) -> MaxError:
        return MaxError({name: float(np.abs(got[name].astype(np.float64) - w.astype(np.float64)).max()) if w.size else 0.0
                         for name, w in wanted.items()}, tolerance)

    return compare
