"""``stylecam lab filters``: the first layer's filters as a grid of colour tiles.

First-layer filters look at pixels directly, so they can be drawn as tiny images: oriented
edges, colour blobs and opponent colours (the lecture's "first layer" slide).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from stylecam.models.factory import create_model
from stylecam.models.lab.common import USER_ERRORS, add_vgg, parser, start, write
from stylecam.models.vgg import load_vgg

__all__ = ["USER_ERRORS", "grid_shape", "main"]

MODELS = ("vgg16", "efficientnet_lite0")


def first_filters(model: str, vgg_source: str) -> torch.Tensor:
    """(N, 3, k, k) in RGB order."""
    if model == "vgg16":
        vgg = load_vgg(vgg_source)
        weight = vgg.features[0].weight.detach()
        return weight.flip(1) if vgg.flip_to_bgr else weight  # Caffe weights see BGR
    return create_model("efficientnet_lite0")._conv_stem.weight.detach()


def grid_shape(count: int) -> tuple[int, int]:
    """(rows, columns): the fewest columns at least sqrt(count) that divide it evenly."""
    columns = next(c for c in range(math.ceil(math.sqrt(count)), count + 1) if count % c == 0)
    return count // columns, columns


def draw(weights: torch.Tensor, long_side: int) -> np.ndarray:
    """Each filter stretched to [0, 255] on its own, scaled up without smoothing, 1-pixel gaps."""
    rows, columns = grid_shape(weights.shape[0])
    tile = max(weights.shape[-1], (long_side - (max(rows, columns) + 1)) // max(rows, columns))
    canvas = np.full((rows * (tile + 1) + 1, columns * (tile + 1) + 1, 3), 255, np.uint8)
    for i, w in enumerate(weights):
        w = w.permute(1, 2, 0).numpy()
        w = (w - w.min()) / max(float(w.max() - w.min()), 1e-12)
        r, c = divmod(i, columns)
        y, x = 1 + r * (tile + 1), 1 + c * (tile + 1)
        canvas[y:y + tile, x:x + tile] = cv2.resize((w * 255).round().astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST)
    return canvas


def main(argv: list[str], prog: str = "stylecam lab filters") -> int:
    p = parser(prog, __doc__.splitlines()[0].split(": ", 1)[1], size=512, steps=1)
    p.add_argument("--model", choices=MODELS, default="vgg16", help="whose first layer (default: vgg16)")
    add_vgg(p)
    args = p.parse_args(argv)
    start(args)
    weights = first_filters(args.model, args.vgg)
    rows, columns = grid_shape(weights.shape[0])
    print(f"{args.model}: {weights.shape[0]} filters of {weights.shape[-2]}x{weights.shape[-1]}x3, drawn {rows}x{columns}")
    write(draw(weights, args.size), args.out / f"filters_{args.model}.png")
    return 0
