"""``stylecam lab neighbors``: nearest neighbours in feature space against pixel space.

The photos of a folder nearest to a query photo, once by the cosine of the saliency
classifier's penultimate features and once by the distance between small thumbnails. The
features find the same things seen differently (a mirrored copy, another bear); pixels
find the same colours and layout.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stylecam.models.data import centre_square, read_rgb
from stylecam.models.lab.common import USER_ERRORS, embed, parser, photos, start, write

__all__ = ["USER_ERRORS", "main", "nearest"]

THUMB = 32  # pixel space: 32x32 centre crops, as the lecture's CIFAR-sized example


def nearest(query: np.ndarray, rows: np.ndarray, count: int, cosine: bool) -> list[int]:
    """Indices of the ``count`` rows nearest ``query``: highest cosine (rows normalised) or
    smallest L2 distance."""
    order = np.argsort(-(rows @ query)) if cosine else np.argsort(((rows - query) ** 2).sum(1))
    return [int(i) for i in order[:count]]


def thumbnails(paths: list[Path]) -> np.ndarray:
    return np.stack([centre_square(read_rgb(p), THUMB).astype(np.float32).ravel() / 255 for p in paths])


def main(argv: list[str], prog: str = "stylecam lab neighbors") -> int:
    p = parser(prog, __doc__.splitlines()[0].split(": ", 1)[1], size=224, steps=1)
    p.add_argument("folder", type=Path, metavar="DIR", help="photos to search (recursively)")
    p.add_argument("--query", type=Path, required=True, metavar="IMG", help="the photo whose neighbours are wanted")
    p.add_argument("--top", type=int, default=6, help="neighbours per row (default: 6)")
    p.add_argument("--tile", type=int, default=128, help="side of each photo in the picture, pixels (default: 128)")
    args = p.parse_args(argv)
    start(args)
    paths = [q for q in photos(args.folder) if q.resolve() != args.query.resolve()]
    features = embed([args.query, *paths], args.size)
    pixels = thumbnails([args.query, *paths])
    rows = {"features": nearest(features[0], features[1:], args.top, cosine=True),
            "pixels": nearest(pixels[0], pixels[1:], args.top, cosine=False)}
    for space, found in rows.items():
        print(f"{space:>8}: " + ", ".join(paths[i].name for i in found))
    query = centre_square(read_rgb(args.query), args.tile)
    pictures = []
    for space, found in rows.items():
        row = [query, np.full((args.tile, 8, 3), 255, np.uint8)] + [centre_square(read_rgb(paths[i]), args.tile) for i in found]
        strip = np.hstack(row)
        cv2.putText(strip, space, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(strip, space, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        pictures += [strip, np.full((4, strip.shape[1], 3), 255, np.uint8)]
    write(np.vstack(pictures[:-1]), args.out / f"{args.query.stem}_neighbors.png")
    return 0
