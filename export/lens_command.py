"""``stylecam export lens LENS``: verified lens graphs + cards for the server."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from stylecam.export.lens import export_lens
from stylecam.export.lenses import LENS_CLASSES, LENSES
from stylecam.export.saliency import DEFAULT_CLASSIFIER
from stylecam.models.data import ImageError, photos_under

DESCRIPTION = ("Export one of the lecture's lenses on a classifier: "
               + "; ".join(f"{name} ({cls.summary})" for name, cls in LENS_CLASSES.items())
               + ". Each gives lens_LENS.onnx, its card lens_LENS.json and the class names file; nothing is "
               "written unless onnxruntime matches PyTorch.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lens", metavar="LENS", choices=(*LENSES, "all"), help=f"lens to export: {', '.join(LENSES)}, or all of them")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--photos", nargs="+", type=Path, metavar="DIR",
                        help="neighbors (and all): folders of gallery photos, searched recursively; the zoo's gallery is "
                        "../shared/data/content")
    parser.add_argument("--classifier", default=DEFAULT_CLASSIFIER, metavar="NAME",
                        help="registered classifier whose layers the lenses walk (only efficientnet_lite0 has a walk)")
    parser.add_argument("--tile", type=int, default=96, metavar="PX", help="side of each gallery thumbnail in the sprite")
    parser.add_argument("--quality", type=int, default=80, metavar="Q", help="JPEG quality of the gallery sprite (1-100)")


def run(args: argparse.Namespace) -> int:
    lenses = LENSES if args.lens == "all" else (args.lens,)
    needing = [name for name in lenses if LENS_CLASSES[name].needs_photos]
    if needing and not args.photos:
        raise ImageError(f"the {needing[0]} lens needs its gallery: --photos DIR [DIR ...] (e.g. ../shared/data/content)")
    if needing:
        photos_under(args.photos)  # an empty gallery is said before any lens is exported
    if not 16 <= args.tile <= 512:
        raise ImageError(f"--tile {args.tile}: between 16 and 512 pixels")
    if not 1 <= args.quality <= 100:
        raise ImageError(f"--quality {args.quality}: between 1 and 100")
    for lens in lenses:
        start = time.perf_counter()
        path = export_lens(lens, args.out, args.classifier, args.photos or (), args.tile, args.quality)
        print(f"{path} ({args.classifier}, {lens}) verified and written in {time.perf_counter() - start:.0f} s")
    return 0
