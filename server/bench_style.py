"""``stylecam bench style``: onnxruntime ms per frame of style models at camera sizes.

Prints a table and writes JSON. Each model runs the same frames in the same process, so
their ratios are meaningful even on a noisy machine; absolute numbers are this machine's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from server.model_card import CardError
from server.ort_model import OrtModel

USER_ERRORS = (CardError,)
SIZES = ((240, 320), (480, 640))


def time_model(model: OrtModel, height: int, width: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    feeds = {"frame": rng.integers(0, 256, (height, width, 3), dtype=np.uint8)}
    if model.card.kind == "multistyle":
        n = len(model.card.styles)
        feeds["style_weights"] = np.full(n, 1.0 / n, dtype=np.float32)
    model.run(**feeds)  # warm-up: allocations and kernel selection
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.run(**feeds)
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "fps": 1000 / statistics.median(times)}


def main(argv: list[str], prog: str = "stylecam bench style") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("models", type=Path, nargs="+", help="exported style models (.onnx with their cards)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="onnxruntime device")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per model and size (after one warm-up)")
    p.add_argument("--json", type=Path, default=Path("bench-results/style.json"), help="where to write the results")
    args = p.parse_args(argv)
    models = [OrtModel.load(path, args.device, args.threads) for path in args.models]
    rows = []
    print(f"{'model':<28} {'provider':<10} {'size':>9} {'median ms':>10} {'min ms':>8} {'fps':>7}")
    for model in models:
        for h, w in SIZES:
            result = time_model(model, h, w, args.repeats)
            rows.append({"model": model.card.name, "provider": model.provider, "height": h, "width": w, **result})
            print(f"{model.card.name:<28} {model.provider.removesuffix('ExecutionProvider'):<10} {f'{w}x{h}':>9} "
                  f"{result['median_ms']:>10.1f} {result['min_ms']:>8.1f} {result['fps']:>7.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"threads": args.threads, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0
