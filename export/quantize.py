"""int8 style graphs for CPUs: onnxruntime static quantisation (QDQ), calibrated on photos.

Convolutions run in int8 (VNNI/AMX kernels), except the first and the last: the first reads
the photo and the last writes the colours, and a network that paints fine texture loses it
there first (multistyle_paint: mean 5.9, p99 36 levels with every conv in int8; 2.5 and 9
with those two in float, which are about 6% of its multiply-adds). Instance norms, the range
conversion and the rounding stay in float, as in the float32 graph. Random frames are far from what a camera
sees, so calibration and verification use photos: calibration on the training split,
verification on the held-out split, against the float32 PyTorch network. An int8 graph is
never bit-exact, so its check is statistical: the mean and the 99th percentile of
|int8 - float32| in 0-255 levels, over every pixel of the held-out photos.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from stylecam.export.verify import VerificationError, check_graph
from stylecam.models.data import read_rgb, split_photos, spread
from stylecam.server.images import scale_to_long_side
from stylecam.server.model_card import FRAME, STYLE, STYLIZED

CALIBRATION_PHOTOS = 28
VERIFY_PHOTOS = 8
CALIBRATION_SIDE = 256
VERIFY_SIDE = 320
# measured on multistyle_paint (8 held-out photos, 320 px): mean 2.6, p99 13, max 59 levels
MEAN_TOLERANCE = 4.0
P99_TOLERANCE = 16.0


def _photos(roots: list[Path], held_out: bool, count: int, side: int) -> list[np.ndarray]:
    """``count`` photos of one split, spread evenly over the sorted list, long side ``side``."""
    return [scale_to_long_side(read_rgb(p), side) for p in spread(split_photos(roots, held_out), count)]


def _feeds(frames: list[np.ndarray], styles: np.ndarray | None) -> list[dict[str, np.ndarray]]:
    """One feed per frame; a multi-style graph (``styles``: its (N, D) style vectors) cycles
    through its styles, so every style's (gamma, beta) shapes the activation ranges."""
    feeds = []
    for i, frame in enumerate(frames):
        feed = {FRAME: frame}
        if styles is not None:
            feed[STYLE] = styles[i % len(styles)]
        feeds.append(feed)
    return feeds


def quantize(fp32_path: Path, out_path: Path, roots: list[Path], styles: np.ndarray | None) -> int:
    """Write the QDQ int8 graph of ``fp32_path``; returns how many photos calibrated it."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    feeds = iter(_feeds(_photos(roots, False, CALIBRATION_PHOTOS, CALIBRATION_SIDE), styles))
    count = 0

    class Photos(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            nonlocal count
            feed = next(feeds, None)
            count += feed is not None
            return feed

    convs = [node.name for node in onnx.load(str(fp32_path)).graph.node if node.op_type == "Conv"]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns through the root logger about its own pre-processing
    try:
        quantize_static(
            str(fp32_path), str(out_path), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv"], nodes_to_exclude=[convs[0], convs[-1]],
        )
    finally:
        root.setLevel(level)
    check_graph(out_path)
    return count


def int8_error(path: Path, reference: torch.nn.Module, roots: list[Path], styles: np.ndarray | None) -> dict[str, float]:
    """|int8 graph - float32 torch| on held-out photos; VerificationError past the tolerances."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    diffs = []
    for feed in _feeds(_photos(roots, True, VERIFY_PHOTOS, VERIFY_SIDE), styles):
        got = session.run([STYLIZED], feed)[0]
        with torch.no_grad():
            want = reference(*(torch.from_numpy(v) for v in feed.values())).numpy()
        diffs.append(np.abs(got.astype(np.int16) - want.astype(np.int16)).ravel())
    diff = np.concatenate(diffs)
    error = {"mean": float(diff.mean()), "p99": float(np.percentile(diff, 99)), "max": float(diff.max()),
             "photos": len(diffs), "long_side": VERIFY_SIDE}
    if error["mean"] > MEAN_TOLERANCE or error["p99"] > P99_TOLERANCE:
        raise VerificationError(
            f"int8 graph too far from float32 on held-out photos: mean {error['mean']:.2f} levels (tolerance "
            f"{MEAN_TOLERANCE:g}), 99th percentile {error['p99']:.1f} (tolerance {P99_TOLERANCE:g})"
        )
    return error
