"""``stylecam bench style``: onnxruntime ms per frame of style models at camera sizes.

Exported models (``.onnx`` with their cards) and foreign ONNX style files (``--foreign``:
no card, the layout is read from the graph) run the same frames in one process, taking
turns within every repeat, so machine noise hits all of them alike and the ratio column
means something even on a busy machine; absolute numbers are this machine's.

Every model is timed from a uint8 RGB camera frame to a uint8 RGB frame. Our graphs do
that conversion inside; for a foreign model (float NCHW in 0..1) the numpy conversion in
and out is part of its time, as it would be in a server that used it.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stylecam.bench.report import add_output_flags, publish
from stylecam.server.config import CPU_PROCESS_SIZE
from stylecam.server.help import HelpFormatter
from stylecam.server.model_card import CardError
from stylecam.server.ort_model import DeviceError, OrtModel, providers_for
from stylecam.server.runner import StyleRunner
from stylecam.server.style_kinds import STYLE_KINDS

SIZES = ((240, 320), CPU_PROCESS_SIZE[::-1], (480, 640))  # (h, w); the middle one is the CPU server's default
FOREIGN_NEEDS = ("one float32 NCHW image input [1, 3, H, W] in 0..1 with dynamic H and W, "
                 "and optionally a 1-D float32 'style_weights' input")


class BenchInputError(ValueError):
    """A foreign file or option the bench cannot use; the message names it."""


USER_ERRORS = (CardError, DeviceError, BenchInputError)


@dataclass(frozen=True)
class Subject:
    """One model under test: ``stylize`` takes a uint8 HxWx3 RGB frame, returns one."""

    name: str
    source: str  # "card" or "foreign"
    path: Path
    provider: str
    stylize: Callable[[np.ndarray], np.ndarray]


def card_subject(path: Path, device: str, threads: int) -> Subject:
    """An exported model, fed as its card says (a multistyle model gets equal weights)."""
    model = OrtModel.load(path, device, threads)
    if model.card.kind not in STYLE_KINDS:
        raise BenchInputError(f"{path}: a {model.card.kind} model, not a style model")
    runner = StyleRunner(model)
    style = runner.style(lambda names: [1.0 / len(names)] * len(names))
    return Subject(model.card.name, "card", Path(path), model.provider, lambda frame: runner(frame, style))


def _describe(args) -> str:
    return ", ".join(f"{a.name} {a.type.removeprefix('tensor(').removesuffix(')')}{list(a.shape)}" for a in args)


def foreign_layout(path: Path, session) -> tuple[str, dict[str, np.ndarray], str]:
    """(image input name, extra feeds, output name) of a foreign style graph, or
    BenchInputError saying which inputs or outputs it cannot use."""
    inputs, outputs = session.get_inputs(), session.get_outputs()

    def is_nchw_float(a) -> bool:
        if a.type != "tensor(float)" or len(a.shape) != 4 or a.shape[1] != 3:
            return False
        return not isinstance(a.shape[0], int) or a.shape[0] == 1

    images = [a for a in inputs if is_nchw_float(a)]
    weights = [a for a in inputs if a.name == "style_weights" and a.type == "tensor(float)"
               and len(a.shape) == 1 and isinstance(a.shape[0], int) and a.shape[0] > 0]
    if len(images) != 1 or len(images) + len(weights) != len(inputs):
        raise BenchInputError(f"{path}: cannot use inputs {_describe(inputs)}; a foreign style model needs {FOREIGN_NEEDS}")
    image = images[0]
    if any(isinstance(d, int) for d in image.shape[2:]):
        raise BenchInputError(f"{path}: input {image.name!r} has a fixed size {image.shape[2]}x{image.shape[3]}; "
                              f"bench style times 320x240 and 640x480, so it needs dynamic H and W")
    if not outputs or not is_nchw_float(outputs[0]):
        raise BenchInputError(f"{path}: cannot use outputs {_describe(outputs)}; the first must be float32 NCHW [1, 3, H, W]")
    feeds = {a.name: np.full(a.shape[0], 1.0 / a.shape[0], dtype=np.float32) for a in weights}
    return image.name, feeds, outputs[0].name


def foreign_subject(path: Path, device: str, threads: int) -> Subject:
    """A cardless ONNX style file, sessioned with the same options as our models."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise BenchInputError(f"--foreign {path}: no such file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=providers_for(device))
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise BenchInputError(f"--foreign {path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None
    image, feeds, output = foreign_layout(Path(path), session)

    def stylize(frame: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32)
        x *= 1.0 / 255.0
        y = session.run([output], {image: x, **feeds})[0][0]
        return (np.clip(y, 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)

    return Subject(Path(path).stem, "foreign", Path(path), session.get_providers()[0], stylize)


def time_subjects(subjects: list[Subject], height: int, width: int, repeats: int, bar: tqdm) -> list[list[float]]:
    """ms of every run of each subject on one random frame of this size. Within a repeat
    each subject runs once, and the first to run rotates, so no model always follows
    another; each gets one untimed warm-up run (allocations, kernel selection) first."""
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    for subject in subjects:
        out = subject.stylize(frame)
        if out.shape != frame.shape:
            raise BenchInputError(f"{subject.path}: returned shape {out.shape} for a {frame.shape} frame")
    times: list[list[float]] = [[] for _ in subjects]
    for r in range(repeats):
        for k in range(len(subjects)):
            i = (r + k) % len(subjects)
            started = time.perf_counter()
            subjects[i].stylize(frame)
            times[i].append((time.perf_counter() - started) * 1000)
        bar.update(1)
    return times


def pick_baseline(subjects: list[Subject], name: str | None) -> Subject:
    """The subject the ratio column divides by: the one named, else the first."""
    if name is None:
        return subjects[0]
    for subject in subjects:
        if name in (subject.name, str(subject.path)):
            return subject
    raise BenchInputError(f"--baseline {name}: no such model; valid: {', '.join(s.name for s in subjects)}")


def main(argv: list[str], prog: str = "stylecam bench style") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("models", type=Path, nargs="*", help="exported style models (.onnx with their cards)")
    p.add_argument("--foreign", type=Path, action="append", default=[], metavar="FILE",
                   help=f"an ONNX style file without a card (repeatable); it needs {FOREIGN_NEEDS}")
    p.add_argument("--baseline", metavar="NAME", help="model the ratio column divides by (default: the first given)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="onnxruntime device")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per model and size (after one warm-up)")
    add_output_flags(p, "style")
    args = p.parse_intermixed_args(argv)
    if not args.models and not args.foreign:
        p.error("give at least one model or --foreign FILE")
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: needs at least 1")
    subjects = ([card_subject(path, args.device, args.threads) for path in args.models]
                + [foreign_subject(path, args.device, args.threads) for path in args.foreign])
    baseline = pick_baseline(subjects, args.baseline)
    rows = []
    with tqdm(total=args.repeats * len(SIZES), desc="repeats", unit="repeat", dynamic_ncols=True, leave=False) as bar:
        for h, w in SIZES:
            times = time_subjects(subjects, h, w, args.repeats, bar)
            base = statistics.median(times[subjects.index(baseline)])
            for subject, ms in zip(subjects, times):
                median = statistics.median(ms)
                rows.append({"model": subject.name, "source": subject.source, "path": str(subject.path),
                             "provider": subject.provider, "height": h, "width": w, "median_ms": median,
                             "min_ms": min(ms), "fps": 1000 / median, "ratio": median / base})
    lines = ["| model | source | provider | size | median ms | min ms | fps | ratio |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {row['model']} | {row['source']} | {row['provider'].removesuffix('ExecutionProvider')} | {row['width']}x{row['height']} "
              f"| {row['median_ms']:.1f} | {row['min_ms']:.1f} | {row['fps']:.1f} | {row['ratio']:.2f} |" for row in rows]
    lines.append(f"ratio: median ms / median ms of {baseline.name} at the same size ({args.repeats} interleaved repeats)")
    publish(args, prog, argv, lines, {"threads": args.threads, "device": args.device, "repeats": args.repeats,
                                      "baseline": baseline.name, "results": rows})
    return 0
