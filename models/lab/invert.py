"""``stylecam lab invert``: feature inversion (Mahendran & Vedaldi 2015).

Noise is optimised until its VGG-16 activation at one layer matches the image's, with a
total-variation prior. Lower layers keep nearly every pixel; deeper ones keep what the
network needs and lose the rest.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stylecam.models import losses
from stylecam.models.data import load_style_image
from stylecam.models.lab.common import USER_ERRORS, Losses, add_vgg, optimise, parser, report, start, write
from stylecam.models.vgg import LAYERS, load_vgg

__all__ = ["USER_ERRORS", "main"]


def main(argv: list[str], prog: str = "stylecam lab invert") -> int:
    p = parser(prog, __doc__.splitlines()[0].split(": ", 1)[1], size=256, steps=300)
    p.add_argument("image", type=Path, help="the photo whose features are inverted")
    p.add_argument("--layer", choices=LAYERS, nargs="+", default=["relu2_2", "relu4_3"],
                   help="VGG layer(s) to invert, one picture each (default: relu2_2 relu4_3)")
    p.add_argument("--tv-weight", type=float, default=0.05, help="weight of the total-variation prior (default: 0.05)")
    p.add_argument("--lr", type=float, default=0.03, help="Adam step on pixels in [0, 1] (default: 0.03)")
    add_vgg(p)
    args = p.parse_args(argv)
    start(args)
    vgg = load_vgg(args.vgg)
    photo = load_style_image(args.image, args.size)
    noise = torch.rand_like(photo)
    for layer in sorted(args.layer, key=LAYERS.index):
        with torch.no_grad():
            target = vgg(photo, upto=layer)[layer]

        def objective(image: torch.Tensor, layer: str = layer, target: torch.Tensor = target) -> Losses:
            feature = losses.content_loss(vgg(image, upto=layer)[layer], target) / target.square().mean()
            tv = losses.total_variation(image)
            return {"feature": feature, "tv": tv, "total": feature + args.tv_weight * tv}

        image = noise.clone()
        history = optimise(image, objective, args.steps, args.lr, f"invert {layer}")
        report(f"invert {layer}", history, ("feature",))
        print(f"invert {layer}: mean |pixel - photo| {(image - photo).abs().mean().item() * 255:.1f} levels")
        write(image, args.out / f"{args.image.stem}_invert_{layer}.png")
    return 0
