"""``stylecam bench lens``: onnxruntime ms per run of the saliency and lens graphs on the CPU.

Every saliency and lens graph of a zoo runs one 640x480 camera frame as the server runs it
(the runner's feeds, and for a lens the little it draws on the host), the graphs taking
turns within every repeat, so machine noise hits all of them alike. A lens or a saliency
map runs beside styling, not in its place, so what one run costs says how often the page
can refresh it. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stylecam.bench.report import add_output_flags, publish
from stylecam.server.help import HelpFormatter, frame_size
from stylecam.server.model_card import DEFAULT_ZOO, CardError, iter_cards
from stylecam.server.ort_model import OrtModel
from stylecam.server.runner import LensRunner, SaliencyRunner

USER_ERRORS = (CardError,)
KINDS = ("saliency", "lens")


def graphs(models: Path, names: set[str] | None, threads: int) -> dict[str, tuple[Path, Callable[[np.ndarray], object]]]:
    """name -> (graph file, one run on a frame), saliency graphs first, as the zoo sorts them."""
    found = sorted(((card.kind, card.name, path.parent / card.onnx) for path, card in iter_cards(models)
                    if card.kind in KINDS and (names is None or card.name in names)), key=lambda g: (KINDS.index(g[0]), g[1]))
    if not found:
        raise CardError(f"no saliency or lens graphs under {models}" + (f" named {', '.join(sorted(names))}" if names else ""))
    runners = {"saliency": SaliencyRunner, "lens": LensRunner}
    return {name: (onnx, runners[kind](OrtModel.load(onnx, "cpu", threads))) for kind, name, onnx in found}


def file_size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def main(argv: list[str], prog: str = "stylecam bench lens") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--models", type=Path, default=DEFAULT_ZOO, help="the zoo whose graphs are timed (default: the shipped one)")
    p.add_argument("--graphs", help="comma-separated graph names (default: every saliency and lens graph)")
    p.add_argument("--size", type=frame_size, default=(640, 480), metavar="WxH", help="the camera frame (default: 640x480)")
    p.add_argument("--repeats", type=int, default=10, help="timed rounds, every graph once each (after one warm-up round)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads per graph")
    add_output_flags(p, "lens")
    args = p.parse_args(argv)
    subjects = graphs(args.models, set(args.graphs.split(",")) if args.graphs else None, args.threads)
    frame = np.random.default_rng(0).integers(0, 256, (args.size[1], args.size[0], 3), dtype=np.uint8)
    times: dict[str, list[float]] = {name: [] for name in subjects}
    for round_ in tqdm(range(args.repeats + 1), desc="rounds", unit="round", dynamic_ncols=True):
        for name, (_, run) in subjects.items():
            start = time.perf_counter()
            run(frame)
            if round_:  # the first round loads and warms every graph
                times[name].append((time.perf_counter() - start) * 1000.0)
    lines = ["| graph | graph file | median ms | min ms |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| `{name}` | {file_size(onnx)} | {statistics.median(times[name]):.0f} | {min(times[name]):.0f} |"
              for name, (onnx, _) in subjects.items()]
    lines.append(f"one {args.size[0]}x{args.size[1]} frame per run, onnxruntime on the CPU, threads: {args.threads}, "
                 f"{args.repeats} interleaved rounds")
    publish(args, prog, argv, lines, {"size": list(args.size), "threads": args.threads,
                                      "ms": {name: times[name] for name in subjects}})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
