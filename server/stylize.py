"""``stylecam stylize``: images or videos through an exported style model, onnxruntime only.

Outputs are written to a temporary name and renamed when complete, so an error or an
interrupt never leaves a half-written file behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from stylecam.server.images import ImageFileError, read_rgb, scale_to_long_side, staging_path, write_rgb
from stylecam.server.model_card import CardError
from stylecam.server.ort_model import OrtModel
from stylecam.server.runner import StyleRunner

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})


class StylizeError(ValueError):
    """Bad input to stylize; the message names the value and the fix."""


USER_ERRORS = (CardError, StylizeError, ImageFileError)


def parse_weights(text: str | None, styles: tuple[str, ...]) -> np.ndarray:
    """``"a=0.5,b=0.5"`` -> float32 vector in card order, normalised to sum 1.

    No text means the first style alone.
    """
    weights = np.zeros(len(styles), dtype=np.float32)
    if not text:
        weights[0] = 1.0
        return weights
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in styles:
            raise StylizeError(f"--weights item {item!r}: expected STYLE=FLOAT with STYLE one of {', '.join(styles)}")
        try:
            weights[styles.index(name)] = float(value)
        except ValueError:
            raise StylizeError(f"--weights {name}={value!r}: not a number") from None
    if (weights < 0).any() or weights.sum() <= 0:
        raise StylizeError("--weights must be non-negative and not all zero")
    return weights / weights.sum()


class Stylizer:
    """One style model plus the fixed extra inputs (blend weights) for every frame."""

    def __init__(self, model: OrtModel, weights_text: str | None, long_side: int | None = None) -> None:
        card = model.card
        if card.kind not in ("style", "multistyle"):
            raise StylizeError(f"{model.path} is a {card.kind} model; stylize needs a style model (use `stylecam explain` for saliency)")
        if card.kind == "style" and weights_text:
            raise StylizeError(f"{model.path} has one style ({card.styles[0]}); --weights is only for multi-style models")
        if long_side is not None and long_side < 16:
            raise StylizeError(f"--size {long_side}: must be at least 16 pixels")
        self.runner = StyleRunner(model)
        self.long_side = long_side
        self.weights = self.runner.weights(parse_weights(weights_text, card.styles)) if self.runner.blends else None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.long_side is not None:
            rgb = scale_to_long_side(rgb, self.long_side)
        return self.runner(rgb, self.weights)


def stylize_image(stylizer: Stylizer, src: Path, dst: Path) -> None:
    write_rgb(dst, stylizer(read_rgb(src)))


def stylize_video(stylizer: Stylizer, src: Path, dst: Path) -> int:
    """Frame by frame, with a progress bar; returns the number of frames."""
    from tqdm import tqdm

    capture = cv2.VideoCapture(str(src))
    if not capture.isOpened():
        raise StylizeError(f"{src}: not a readable video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    staged = staging_path(dst)
    writer = None
    count = 0
    try:
        with tqdm(total=total, desc=src.name, unit="frame", dynamic_ncols=True) as bar:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                out = cv2.cvtColor(stylizer(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), cv2.COLOR_RGB2BGR)
                if writer is None:
                    fourcc = cv2.VideoWriter.fourcc(*("VP80" if dst.suffix.lower() == ".webm" else "mp4v"))
                    writer = cv2.VideoWriter(str(staged), fourcc, fps, (out.shape[1], out.shape[0]))
                    if not writer.isOpened():
                        raise StylizeError(f"{dst}: OpenCV cannot write this video format; use .mp4 or .avi")
                writer.write(out)
                count += 1
                bar.update(1)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if count == 0:
        raise StylizeError(f"{src}: the video has no frames")
    os.replace(staged, dst)
    return count


def output_path(src: Path, out: Path, model_name: str, many: bool) -> Path:
    """``--out`` is the file for one input, or a folder (created) for several."""
    if not many and out.suffix:
        return out
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{src.stem}_{model_name}{src.suffix if src.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES else '.png'}"


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example: stylecam stylize photo.jpg --model models/zoo/multistyle_rt.onnx "
               "--weights starry_night=0.5,wave=0.5 --out photo_styled.jpg",
    )
    p.add_argument("inputs", type=Path, nargs="+", metavar="IN", help="images, or videos (.mp4 .avi .mov .mkv .webm)")
    p.add_argument("--model", type=Path, required=True, help="an exported style model NAME.onnx (its NAME.json card beside it)")
    p.add_argument("--weights", help="multi-style blend, STYLE=W,STYLE=W (normalised to sum 1); default: the first style")
    p.add_argument("--out", type=Path, default=Path("stylized"), help="output file (one input) or folder")
    p.add_argument("--size", type=int, default=None, metavar="N",
                   help="scale inputs so their long side is N pixels first (brush strokes keep the size they were "
                        "trained at, so a smaller input looks more painted; the CPU server styles at 320); default: as is")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="onnxruntime device")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all cores)")
    return p


def main(argv: list[str], prog: str = "stylecam stylize") -> int:
    args = build_parser(prog).parse_args(argv)
    stylizer = Stylizer(OrtModel.load(args.model, args.device, args.threads), args.weights, args.size)
    missing = [str(src) for src in args.inputs if not src.is_file()]
    if missing:
        raise StylizeError(f"no such file: {', '.join(missing)}")
    many = len(args.inputs) > 1
    for src in args.inputs:
        dst = output_path(src, args.out, stylizer.runner.model.card.name, many)
        if src.suffix.lower() in VIDEO_SUFFIXES:
            frames = stylize_video(stylizer, src, dst)
            print(f"{src} -> {dst} ({frames} frames)")
        else:
            stylize_image(stylizer, src, dst)
            print(f"{src} -> {dst}")
    sys.stdout.flush()
    return 0
