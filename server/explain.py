"""``stylecam explain``: what the classifier looks at in still images, with onnxruntime only.

Runs an exported saliency graph (``stylecam export saliency``) on each image, writes the
heat map overlay as a PNG and prints the top-5 classes.
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
from stylecam.server.model_card import DEFAULT_ZOO, CardError, iter_cards
from stylecam.server.ort_model import OrtModel
from stylecam.server.runner import SaliencyRunner


class ExplainError(ValueError):
    """Bad input to ``stylecam explain``; the message names it and the fix."""


USER_ERRORS = (ExplainError, CardError, ImageFileError)


def saliency_models(directory: Path) -> dict[str, Path]:
    """method -> .onnx path of every saliency card in ``directory``."""
    return {card.method: path.parent / card.onnx for path, card in iter_cards(directory, recursive=False)
            if card.kind == "saliency" and card.method}


def find_model(directory: Path, method: str) -> Path:
    models = saliency_models(directory)
    if not models:
        raise ExplainError(f"no saliency models in {directory}; "
                           f"export them with `stylecam export saliency all --out {directory}` or pass --models DIR")
    if method not in models:
        raise ExplainError(f"unknown method {method!r}; available in {directory}: {', '.join(models)}")
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
    picture = overlay.apply(rgb.copy(), result.map, opacity)
    return Explanation(picture, top_classes(result.logits), result.explained)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Show what the classifier looks at: writes OUT/<image>_<method>.png (heat map "
        "overlay, inferno colours) for each image and prints its top-5 classes.",
    )
    parser.add_argument("images", nargs="*", type=Path, metavar="IMG", help="images to explain")
    parser.add_argument("--method", required=True, help="saliency method: vanilla, guided, smoothgrad, gradcam "
                        "(any with an exported model in --models)")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="output folder (default: .)")
    parser.add_argument("--target", metavar="CLASS", help="class to explain, by index (0-999) or name, "
                        "e.g. 'tabby' (default: each image's top-1 class)")
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
