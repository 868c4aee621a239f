"""``stylecam bench parity``: how exactly each exported saliency graph reproduces PyTorch.

For every shipped saliency graph and frame: the largest and the median difference of the
maps (as a fraction of their 0..1 range) between onnxruntime and PyTorch float32, and, to
show how much of it float32 itself causes, between each of them and PyTorch float64.
Gradient maps pass through ReLU6 gates, so a few float32 rounding steps can open a gate in
one implementation and not the other; this table measures how far that goes.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stylecam.bench.deletion import pick
from stylecam.bench.report import add_output_flags, publish
from stylecam.export.saliency import check_frames, reference
from stylecam.export.saliency_methods import create_method
from stylecam.models.builders import UnknownModel, WeightsUnavailable
from stylecam.models.data import ImageError, read_rgb
from stylecam.models.factory import create_model
from stylecam.server.help import HelpFormatter
from stylecam.server.model_card import DEFAULT_ZOO, CardError, iter_cards
from stylecam.server.ort_model import OrtModel

USER_ERRORS = (ImageError, CardError, UnknownModel, WeightsUnavailable)


@dataclass(frozen=True)
class Row:
    method: str
    frame: str
    ort_vs_fp32_max: float
    ort_vs_fp32_median: float
    ort_vs_fp64_max: float
    fp32_vs_fp64_max: float


def measure(models: Path, photos: dict[str, np.ndarray], methods: set[str] | None, threads: int) -> list[Row]:
    rows = []
    graphs = [(card.method, path.parent / card.onnx) for path, card in iter_cards(models)
              if card.kind == "saliency" and (methods is None or card.method in methods)]
    if not graphs:
        raise CardError(f"no saliency graphs under {models}; export them with `stylecam export saliency all`")
    for name, onnx_path in tqdm(graphs, desc="methods", unit="method", dynamic_ncols=True):
        graph = OrtModel.load(onnx_path, "cpu", threads)
        single = create_method(name, create_model(graph.card.classifier))
        double = create_method(name, create_model(graph.card.classifier).double())
        synthetic = {f"synthetic {f.shape[0]}x{f.shape[1]}": f for f in check_frames(single.model.pretrained_cfg.input_size)}
        for label, frame in (synthetic | photos).items():
            ort_map = graph.run(frame=frame, target=np.array([-1], np.int64))["saliency"].astype(np.float64)
            fp32 = reference(single, frame)["saliency"].astype(np.float64)
            fp64 = reference(double, frame, dtype=torch.float64)["saliency"]
            rows.append(Row(
                method=name, frame=label, ort_vs_fp32_max=float(np.abs(ort_map - fp32).max()),
                ort_vs_fp32_median=float(np.median(np.abs(ort_map - fp32))),
                ort_vs_fp64_max=float(np.abs(ort_map - fp64).max()), fp32_vs_fp64_max=float(np.abs(fp32 - fp64).max()),
            ))
    return rows


def worst(rows: list[Row]) -> dict[str, Row]:
    """Each method's largest figure over its frames, column by column: a parity rule must hold
    on every frame, so the worst is the figure that says whether one could."""
    methods: dict[str, list[Row]] = {}
    for r in rows:
        methods.setdefault(r.method, []).append(r)
    return {method: Row(method, "worst", *(max(getattr(r, f) for r in mine) for f in
                                          ("ort_vs_fp32_max", "ort_vs_fp32_median", "ort_vs_fp64_max", "fp32_vs_fp64_max")))
            for method, mine in methods.items()}


def main(argv: list[str], prog: str = "stylecam bench parity") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("images", nargs="*", type=Path, metavar="DIR",
                        help="folders of photos (searched recursively) added to the two synthetic verification frames")
    parser.add_argument("--count", type=int, default=4, help="photos to use, spread over the folders")
    parser.add_argument("--models", type=Path, default=DEFAULT_ZOO, help="folder of saliency graphs and their cards (default: the shipped ones)")
    parser.add_argument("--methods", help="comma-separated methods (default: every graph found)")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    add_output_flags(parser, "parity")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    photos = {p.name: read_rgb(p) for p in (pick(args.images, args.count) if args.images else [])}
    methods = set(args.methods.split(",")) if args.methods else None
    rows = measure(args.models, photos, methods, args.threads)
    frames = len({r.frame for r in rows})
    lines = [f"map differences as fractions of the map's range, the worst of {frames} frames for each method "
             "(the two synthetic verification frames and the photos; every frame's figures are in the JSON)",
             "| method | onnxruntime vs PyTorch fp32, max | the same, median | onnxruntime vs fp64, max | PyTorch fp32 vs fp64, max |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {method} | {w.ort_vs_fp32_max:.2g} | {w.ort_vs_fp32_median:.2g} | {w.ort_vs_fp64_max:.2g} | {w.fp32_vs_fp64_max:.2g} |"
              for method, w in worst(rows).items()]
    publish(args, prog, argv, lines, {"rows": [asdict(r) for r in rows]})
    return 0
