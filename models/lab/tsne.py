"""``stylecam lab tsne``: a t-SNE map of a folder's photos in feature space.

scikit-learn's t-SNE places the saliency classifier's penultimate features in 2-D so that
photos the network sees alike land together; the picture draws each photo at its place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stylecam.models.data import ImageError, centre_square, read_rgb
from stylecam.models.lab.common import USER_ERRORS, embed, parser, photos, start, write

__all__ = ["USER_ERRORS", "layout", "main"]


def layout(features: np.ndarray, seed: int) -> np.ndarray:
    """(N, 2) positions in [0, 1], the same for the same features and seed."""
    from sklearn.manifold import TSNE

    if len(features) < 3:
        raise ImageError(f"t-SNE needs at least 3 photos, not {len(features)}")
    points = TSNE(n_components=2, perplexity=min(30.0, (len(features) - 1) / 3), init="pca", random_state=seed,
                  metric="cosine").fit_transform(features.astype(np.float64))
    points -= points.min(0)
    return points / np.maximum(points.max(0), 1e-12)


def main(argv: list[str], prog: str = "stylecam lab tsne") -> int:
    p = parser(prog, __doc__.splitlines()[0].split(": ", 1)[1], size=224, steps=1)
    p.add_argument("folder", type=Path, metavar="DIR", help="photos to map (recursively)")
    p.add_argument("--canvas", type=int, default=1024, help="side of the picture, pixels (default: 1024)")
    p.add_argument("--tile", type=int, default=48, help="side of each photo on it, pixels (default: 48)")
    args = p.parse_args(argv)
    start(args)
    paths = photos(args.folder)
    points = layout(embed(paths, args.size), args.seed)
    canvas = np.full((args.canvas, args.canvas, 3), 255, np.uint8)
    room = args.canvas - args.tile
    for path, (x, y) in zip(paths, points):
        top, left = int(round(y * room)), int(round(x * room))
        canvas[top:top + args.tile, left:left + args.tile] = centre_square(read_rgb(path), args.tile)
    print(f"tsne: {len(paths)} photos placed")
    write(canvas, args.out / f"tsne_{args.folder.name}.png")
    return 0
