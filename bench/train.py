"""``stylecam bench train``: seconds per training step, float32 against bf16 autocast + channels_last.

Every configuration (body x crop size x step kind x precision) is a real
``models.train.Trainer``: the network, Adam, batches cut in a background thread, as
``stylecam train`` runs them. A perceptual step runs VGG-16 up to relu4_3; a teacher step
only the network, against a teacher's render of the same crop (``--teacher DIR``, a folder
written by ``stylecam teach``; without one, a stand-in made of the photos themselves,
which costs the same). The configurations take turns, one step each per round, so a background
load or a clock change hits them all alike; the first rounds (allocations, kernel choice)
are dropped and each figure is the median of the rest. Ratios are meaningful on a busy
machine; absolute numbers are this machine's at the time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from stylecam.bench.report import add_output_flags, publish
from stylecam.models.builders import WeightsUnavailable
from stylecam.models.checkpoint import CheckpointError
from stylecam.models.data import ContentImages, ImageError, centre_square, load_style_image, read_rgb, split_photos, write_png
from stylecam.models.teacher import MANIFEST
from stylecam.models.train import ARCHS, STEP_KINDS, TrainConfig, Trainer, cpu_has_fast_bf16
from stylecam.models.vgg import LAYERS, SOURCES
from stylecam.server.help import HelpFormatter, UsageError

USER_ERRORS = (ImageError, UsageError, CheckpointError, WeightsUnavailable)  # as `stylecam train`'s
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Row:
    arch: str
    size: int
    kind: str
    precision: str
    median_s: float
    min_s: float
    steps: int


def timed_step(trainer: Trainer) -> float:
    """Seconds of one optimizer step; on a GPU, until its work has finished."""
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    trainer.train_step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


Key = tuple[str, int, str, str]  # arch, size, step kind, precision


def measure(trainers: dict[Key, Trainer], warmup: int, steps: int) -> list[Row]:
    """Round robin over the configurations, starting one further along each round so that
    none always runs right after the same neighbour."""
    keys = list(trainers)
    times: dict[Key, list[float]] = {key: [] for key in keys}
    with contextlib.ExitStack() as stack:
        for trainer in trainers.values():
            stack.enter_context(trainer.prefetching())
        with tqdm(total=(warmup + steps) * len(keys), desc="steps", unit="step", dynamic_ncols=True) as bar:
            for round_ in range(warmup + steps):
                for i in range(len(keys)):
                    key = keys[(round_ + i) % len(keys)]
                    seconds = timed_step(trainers[key])
                    if round_ >= warmup:
                        times[key].append(seconds)
                    bar.update(1)
    return [Row(*key, median_s=statistics.median(t), min_s=min(t), steps=len(t)) for key, t in times.items()]


def table(rows: list[Row]) -> list[str]:
    """A row per body, crop size and step kind; a column per precision timed, and bf16's
    speed-up where both were."""
    precisions = [p for p in PRECISIONS if any(r.precision == p for r in rows)]
    both = len(precisions) == len(PRECISIONS)
    by_key = {(r.arch, r.size, r.kind, r.precision): r.median_s for r in rows}
    lines = ["| body | size | step | " + " | ".join(f"{p} s/step" for p in precisions) + (" | bf16 speed-up" if both else "") + " |",
             "| --- | ---: | --- | " + " | ".join("---:" for _ in precisions) + (" | ---:" if both else "") + " |"]
    for arch, size, kind in dict.fromkeys((r.arch, r.size, r.kind) for r in rows):
        seconds = [by_key[arch, size, kind, p] for p in precisions]
        cells = [f"{s:.3f}" for s in seconds] + ([f"{seconds[0] / seconds[1]:.2f}x"] if both else [])
        lines.append(f"| {arch} | {size} | {kind} | " + " | ".join(cells) + " |")
    return lines


def stand_in_teacher(content: list[Path], style: str, folder: Path, count: int = 8, side: int = 384) -> Path:
    """A ``stylecam teach`` folder whose 'teacher' returns the photo: a teacher step costs the
    same whatever the target's pixels are."""
    written = 0
    for path in split_photos(content, held_out=False):
        try:
            square = centre_square(read_rgb(path), side)
        except ImageError:  # skipped, as training skips it
            continue
        for sub in ("photos", style):
            write_png(folder / sub / f"{path.stem}.png", square)
        written += 1
        if written == count:
            break
    (folder / MANIFEST).write_text(json.dumps({"teacher": "stand-in: the photos", "styles": [style], "side": side}))
    return folder


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def make_trainers(args: argparse.Namespace, teacher: Path | None) -> dict[Key, Trainer]:
    """One trainer per configuration; perceptual ones share the photos read at each size."""
    trainers = {}
    photos: dict[int, ContentImages] = {}
    for arch in args.archs:
        for size in args.sizes:
            for kind in args.kinds:
                for precision in args.precisions:
                    taught = dict(teacher=str(teacher), distill_weight=1.0, edge_weight=1.0) if kind == "teacher" else {}
                    config = TrainConfig(styles=(str(args.style),), content=tuple(map(str, args.content)), out="",
                                         arch=arch, size=size, batch_size=args.batch_size, style_layers=LAYERS,
                                         vgg=args.vgg, device=args.device, precision=precision, step_kind=kind, **taught)
                    # the same photos at the same size: read once, one copy in memory (~0.5 GB at 256 px)
                    trainer = Trainer(config, content=None if kind == "teacher" else photos.get(size))
                    if kind == "perceptual":
                        photos.setdefault(size, trainer.content)
                    trainers[arch, size, kind, precision] = trainer
    return trainers


def main(argv: list[str], prog: str = "stylecam bench train") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--archs", choices=ARCHS, nargs="+", default=list(ARCHS), help="network bodies to time")
    p.add_argument("--sizes", type=positive, nargs="+", default=[192, 256], help="training crop sides in pixels")
    p.add_argument("--batch-size", type=positive, default=4, help="content crops per step")
    p.add_argument("--kinds", choices=STEP_KINDS, nargs="+", default=list(STEP_KINDS),
                   help="step kinds: perceptual (VGG-16 losses) and teacher (the pull toward a teacher's render alone)")
    p.add_argument("--teacher", type=Path, metavar="DIR",
                   help="a folder written by `stylecam teach` with the --style painting (default: a stand-in of the photos)")
    p.add_argument("--precisions", choices=PRECISIONS, nargs="+", default=list(PRECISIONS),
                   help="fp32 and bf16 autocast; leave bf16 out where the CPU only emulates it (no AVX512-BF16 or AMX: "
                        "a step takes minutes)")
    p.add_argument("--steps", type=positive, default=5, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    p.add_argument("--content", type=Path, nargs="+", default=[Path("../shared/data/content")],
                   help="folder(s) of content photos")
    p.add_argument("--style", type=Path, default=Path("../shared/data/styles/starry_night.jpg"), help="style image")
    p.add_argument("--vgg", default="auto", metavar="{" + ",".join(SOURCES) + ",FILE}",
                   help="VGG-16 weights, as for `stylecam train --vgg`")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = cuda when torch sees a GPU")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0 = torch's default)")
    add_output_flags(p, "train")
    args = p.parse_args(argv)
    if args.warmup < 0:
        p.error(f"--warmup must be at least 0, got {args.warmup}")
    load_style_image(args.style, 8)  # fails now, with the file's name, rather than after the first trainer
    for folder in args.content:
        if not folder.is_dir():
            raise ImageError(f"--content {folder}: not a folder of images")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        teacher = args.teacher
        if teacher is None and "teacher" in args.kinds:
            teacher = stand_in_teacher(args.content, args.style.stem, Path(scratch))
        trainers = make_trainers(args, teacher)
    first = next(iter(trainers.values()))
    if first.device.type == "cpu":
        device = f"cpu ({torch.get_num_threads()} threads, bf16 {'native' if cpu_has_fast_bf16() else 'emulated'})"
    else:
        device = torch.cuda.get_device_name(first.device)
    vgg = next((t.vgg.source for t in trainers.values() if t.vgg is not None), "")
    header = (f"{len(trainers)} configurations on {device}, batch {args.batch_size}"
              + (f", VGG-16 ({vgg}) to relu4_3 in perceptual steps" if vgg else ""))
    rows = measure(trainers, args.warmup, args.steps)
    publish(args, prog, argv, [header, *table(rows)], {
        "device": device, "threads": torch.get_num_threads(), "cpu_fast_bf16": cpu_has_fast_bf16(),
        "batch_size": args.batch_size, "vgg": vgg, "style_layers": LAYERS, "warmup": args.warmup,
        "steps": args.steps, "rows": [asdict(r) for r in rows],
    })
    return 0
