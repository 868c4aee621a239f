"""``stylecam explain``: what the classifier looks at in still images, with onnxruntime only.

Runs an exported saliency graph (``stylecam export saliency``) on each image, writes the
heat map overlay as a PNG and prints the top-5 classes; or, with ``--lens``, one of the
lens graphs (``stylecam export lens``), writing what the page shows for it as a picture.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylecam.server.classes import UnknownClass, find_class, top_classes
from stylecam.server.compose import Overlay
from stylecam.server.images import ImageFileError, read_rgb, write_rgb
from stylecam.server.lenses import ORDERED
from stylecam.server.model_card import DEFAULT_ZOO, CardError, iter_cards
from stylecam.server.ort_model import OrtModel
from stylecam.server.runner import LensRunner, SaliencyRunner, fed_back
from stylecam.server.saliency_methods import SALIENCY_METHODS


class ExplainError(ValueError):
    """Bad input to ``stylecam explain``; the message names it and the fix."""


USER_ERRORS = (ExplainError, CardError, ImageFileError)


def saliency_models(directory: Path, kind: str = "saliency") -> dict[str, Path]:
    """method -> .onnx path of every saliency (or lens) card in ``directory``."""
    return {card.method: path.parent / card.onnx for path, card in iter_cards(directory, recursive=False)
            if card.kind == kind and card.method}


def find_model(directory: Path, method: str, kind: str = "saliency") -> Path:
    models = saliency_models(directory, kind)
    if not models:
        raise ExplainError(f"no {kind} models in {directory}; "
                           f"export them with `stylecam export {kind} all --out {directory}` or pass --models DIR")
    if method not in models:
        raise ExplainError(f"unknown {'lens' if kind == 'lens' else 'method'} {method!r}; available in {directory}: {', '.join(models)}")
    return models[method]


def parse_target(text: str | None, labels: Sequence[str], method: str) -> int:
    """A class index or a (case-insensitive) class name -> index; None -> -1 (top-1)."""
    if text is None:
        return -1
    try:
        return find_class(text, labels)
    except UnknownClass as e:
        raise ExplainError(f"{e}; list the names with `stylecam explain --list-classes --method {method}`") from None


@dataclass(frozen=True)
class Explanation:
    overlay: np.ndarray  # uint8 (H, W, 3) RGB
    top5: list[tuple[int, float]]  # (class index, probability)
    explained: int


def explain(runner: SaliencyRunner, rgb: np.ndarray, target: int, opacity: float, overlay: Overlay) -> Explanation:
    result = runner(rgb, target)
    picture = runner.method.picture(overlay, rgb.copy(), result.map, opacity)
    return Explanation(picture, top_classes(result.logits), result.explained)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Show what the classifier looks at: writes OUT/<image>_<method>.png (heat map "
        "overlay, inferno colours) for each image and prints its top-5 classes.",
    )
    parser.add_argument("images", nargs="*", type=Path, metavar="IMG", help="images to explain")
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--method", help=f"saliency method: {', '.join(SALIENCY_METHODS)} "
                        "(any with an exported model in --models)")
    lenses = ", ".join(lens.name + (f" ({', '.join('--' + c for c in lens.controls)})" if lens.controls else "") for lens in ORDERED)
    chosen.add_argument("--lens", help=f"a lens instead: {lenses}; writes OUT/<image>_<lens>.png as the page shows it")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="output folder (default: .)")
    parser.add_argument("--target", metavar="CLASS", help="class to explain (or, with --lens fool, to aim at), by index "
                        "(0-999) or name, e.g. 'tabby' (default: each image's top-1 class; for fool, toaster)")
    parser.add_argument("--layer", type=int, metavar="INDEX", help="the lens's layer, an index into its card's layers "
                        "(default: the card's default, a middle one)")
    parser.add_argument("--runs", type=int, default=1, metavar="N", help="dream: runs of the graph, each fed back "
                        "its previous dream as the page does (default: 1)")
    parser.add_argument("--channel", type=int, default=-1, metavar="INDEX",
                        help="activations: one channel of --layer as a heat map (default: -1, a mosaic of the most active)")
    parser.add_argument("--models", type=Path, default=DEFAULT_ZOO, metavar="DIR",
                        help="folder of exported saliency models (default: the shipped models)")
    parser.add_argument("--opacity", type=float, default=0.6, help="heat map opacity where saliency is 1 (default: 0.6)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default: 2)")
    parser.add_argument("--list-classes", action="store_true", help="print the class indices and names, then exit")
    return parser


def main(argv: list[str], prog: str = "stylecam explain") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not args.list_classes and not args.images:
        parser.error("give at least one image (or --list-classes)")
    if not 0.0 <= args.opacity <= 1.0:
        raise ExplainError(f"--opacity {args.opacity} is outside [0, 1]")
    if args.lens:
        return run_lens(args)
    runner = SaliencyRunner(OrtModel.load(find_model(args.models, args.method), device="cpu", threads=args.threads))
    labels = runner.labels
    if args.list_classes:
        print("\n".join(f"{i:4d}  {name}" for i, name in enumerate(labels)))
        return 0
    target = parse_target(args.target, labels, args.method)
    images = [(path, read_rgb(path)) for path in args.images]  # every image readable before any output
    args.out.mkdir(parents=True, exist_ok=True)
    overlay = Overlay()
    for path, rgb in images:
        result = explain(runner, rgb, target, args.opacity, overlay)
        dst = args.out / f"{path.stem}_{args.method}.png"
        write_rgb(dst, result.overlay)
        top = ", ".join(f"{labels[i]} {p:.3f}" for i, p in result.top5)
        print(f"{path}: {top}  -> {dst} (explains {labels[result.explained]!r})")
    return 0


def run_lens(args: argparse.Namespace) -> int:
    runner = LensRunner(OrtModel.load(find_model(args.models, args.lens, "lens"), device="cpu", threads=args.threads))
    if args.list_classes:
        print("\n".join(f"{i:4d}  {name}" for i, name in enumerate(runner.labels)))
        return 0
    target = None if args.target is None else parse_target(args.target, runner.labels, args.lens)
    if args.layer is not None and not 0 <= args.layer < max(len(runner.layers), 1):
        raise ExplainError(f"--layer {args.layer}: lens {args.lens!r} has layers 0..{len(runner.layers) - 1} "
                           f"({', '.join(layer.get('name', '?') for layer in runner.layers) or 'none'})")
    images = [(path, read_rgb(path)) for path in args.images]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.runs < 1:
        raise ExplainError(f"--runs {args.runs}: at least 1")
    for path, rgb in images:
        view = runner(rgb, args.layer, args.channel, target)
        for _ in range(args.runs - 1 if runner.lens.feeds_back else 0):
            view = runner(fed_back(rgb, view.image), args.layer, args.channel, target)
        dst = args.out / f"{path.stem}_{args.lens}.png"
        write_rgb(dst, runner.lens.picture(runner, view, rgb, args.opacity))
        found = {k: v for k, v in view.info.items() if k not in ("top5", "note")}
        print(f"{path}: {found}  -> {dst}")
    return 0
