"""``stylecam lab texture``: Gram-matrix texture synthesis from noise (Gatys et al. 2015).

Noise is optimised until its Gram matrices match the image's at the chosen VGG-16 layers.
Lower layers alone give small features; adding deeper layers gives larger structures.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stylecam.models.data import ImageError, load_style_image
from stylecam.models.lab.common import USER_ERRORS, add_vgg, optimise, parser, report, start, write
from stylecam.models.lab.gatys import gram_objective, style_grams
from stylecam.models.vgg import LAYERS, load_vgg

__all__ = ["USER_ERRORS", "main", "output_size"]


def output_size(text: str, source: tuple[int, int]) -> tuple[int, int]:
    """--size as WxH, or N for the long side at the source's aspect; returns (H, W)."""
    try:
        if "x" in text:
            w, h = (int(v) for v in text.lower().split("x"))
        else:
            n, (sh, sw) = int(text), source
            h, w = (n, round(n * sw / sh)) if sh >= sw else (round(n * sh / sw), n)
    except ValueError:
        raise ImageError(f"--size {text!r}: give N (the long side) or WxH, in pixels") from None
    if min(h, w) < 16:
        raise ImageError(f"--size {text!r} is too small: at least 16 pixels a side")
    return h, w


def main(argv: list[str], prog: str = "stylecam lab texture") -> int:
    p = parser(prog, __doc__.splitlines()[0].split(": ", 1)[1], size=256, steps=300,
               size_help="N (the long side, at the image's aspect) or WxH of the texture, pixels")
    p.add_argument("image", type=Path, help="the texture or painting to sample")
    p.add_argument("--layers", choices=LAYERS, nargs="+", default=list(LAYERS),
                   help="VGG layers whose Grams are matched: lower alone give smaller features (default: all four)")
    p.add_argument("--source-size", type=int, default=256, help="long side the image is read at (default: 256)")
    p.add_argument("--tv-weight", type=float, default=0.1, help="weight of total variation (default: 0.1)")
    p.add_argument("--lr", type=float, default=0.03, help="Adam step on pixels in [0, 1] (default: 0.03)")
    add_vgg(p)
    args = p.parse_args(argv)
    source = load_style_image(args.image, args.source_size)
    h, w = output_size(args.size, tuple(source.shape[-2:]))
    args.size = max(h, w)
    start(args)
    vgg = load_vgg(args.vgg)
    layers = tuple(sorted(args.layers, key=LAYERS.index))
    objective = gram_objective(vgg, style_grams(vgg, source, layers), 1.0, args.tv_weight)
    image = torch.rand(1, 3, h, w)
    history = optimise(image, objective, args.steps, args.lr, "texture")
    report("texture", history, ("style",))
    write(image, args.out / f"{args.image.stem}_texture_{'+'.join(layers)}.png")
    return 0
