"""``stylecam lab gatys``: neural style transfer by optimisation (Gatys et al. 2016).

The picture itself is optimised so that its VGG-16 features match the content photo at one
layer and its Gram matrices match the style image(s) at the style layers; with several
styles the Gram targets are their weighted mean. This is what `stylecam train` teaches a
feedforward network to do in one pass.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from stylecam.models import losses
from stylecam.models.data import ImageError, load_style_image, to_uint8
from stylecam.models.lab.common import USER_ERRORS, Losses, add_vgg, optimise, parser, report, start, write
from stylecam.models.vgg import LAYERS, VGGFeatures, load_vgg

__all__ = ["USER_ERRORS", "blend_grams", "main", "style_grams"]


def style_grams(vgg: VGGFeatures, image: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        features = vgg(image)
    return {layer: losses.gram(features[layer]) for layer in layers}


def blend_grams(grams: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """The Gram target of a blend: each layer's weighted mean over the styles (weights
    normalised to sum 1)."""
    if len(weights) != len(grams) or min(weights) < 0 or sum(weights) <= 0:
        raise ImageError(f"--style-weights: one non-negative number per style, not all zero (got {weights} for {len(grams)})")
    total = sum(weights)
    return {layer: sum(w / total * g[layer] for w, g in zip(weights, grams)) for layer in grams[0]}


def gram_objective(vgg: VGGFeatures, targets: dict[str, torch.Tensor], style_weight: float, tv_weight: float,
                   content: tuple[str, torch.Tensor, float] | None = None):
    """The losses of a picture: relative Gram error summed over layers, optionally a relative
    content error at one layer, and total variation."""
    layers = tuple(targets)

    def objective(image: torch.Tensor) -> Losses:
        features = vgg(image)
        terms = {"style": losses.style_loss([features[layer] for layer in layers], [targets[layer] for layer in layers])}
        total = style_weight * terms["style"]
        if content is not None:
            layer, target, weight = content
            terms["content"] = losses.content_loss(features[layer], target) / target.square().mean()
            total = total + weight * terms["content"]
        terms["tv"] = losses.total_variation(image)
        terms["total"] = total + tv_weight * terms["tv"]
        return terms

    return objective


def keep_colours(styled: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance from the styled picture, colour (chroma) from the content photo (Gatys et al.
    2016, "Preserving color in neural artistic style transfer")."""
    y = cv2.cvtColor(styled, cv2.COLOR_RGB2YCrCb)
    y[..., 1:] = cv2.cvtColor(content, cv2.COLOR_RGB2YCrCb)[..., 1:]
    return cv2.cvtColor(y, cv2.COLOR_YCrCb2RGB)


def main(argv: list[str], prog: str = "stylecam lab gatys") -> int:
    p = parser(prog, __doc__.splitlines()[0].split(": ", 1)[1], size=384, steps=300)
    p.add_argument("content", type=Path, help="the photo to restyle")
    p.add_argument("--style", type=Path, nargs="+", required=True, metavar="S", help="one style image, or several to blend")
    p.add_argument("--style-weights", type=float, nargs="+", metavar="W", help="one per style (default: equal)")
    p.add_argument("--style-scale", type=float, default=1.0,
                   help="style image long side as a multiple of --size: smaller gives bigger strokes (default: 1)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours; take only the styled luminance")
    p.add_argument("--init", choices=("content", "noise"), default="content", help="start from the photo or from noise (default: content)")
    p.add_argument("--content-layer", choices=LAYERS, default="relu3_3", help="VGG layer of the content loss (default: relu3_3)")
    p.add_argument("--style-layers", choices=LAYERS, nargs="+", default=list(LAYERS), help="VGG layers of the style loss (default: all four)")
    p.add_argument("--content-weight", type=float, default=1.0, help="weight of the relative content loss (default: 1)")
    p.add_argument("--style-weight", type=float, default=10.0, help="weight of the relative style loss (default: 10)")
    p.add_argument("--tv-weight", type=float, default=0.5, help="weight of total variation (default: 0.5)")
    p.add_argument("--lr", type=float, default=0.02, help="Adam step on pixels in [0, 1] (default: 0.02)")
    add_vgg(p)
    args = p.parse_args(argv)
    start(args)
    if args.style_scale <= 0:
        raise ImageError(f"--style-scale {args.style_scale}: must be positive")
    vgg = load_vgg(args.vgg)
    content = load_style_image(args.content, args.size)
    layers = tuple(args.style_layers)
    grams = [style_grams(vgg, load_style_image(s, round(args.size * args.style_scale)), layers) for s in args.style]
    targets = blend_grams(grams, args.style_weights or [1.0] * len(grams))
    with torch.no_grad():
        content_target = vgg(content, upto=args.content_layer)[args.content_layer]
    objective = gram_objective(vgg, targets, args.style_weight, args.tv_weight, (args.content_layer, content_target, args.content_weight))
    image = content.clone() if args.init == "content" else torch.rand_like(content)
    history = optimise(image, objective, args.steps, args.lr, "gatys")
    report("gatys", history, ("style", "content"))
    result = to_uint8(image)
    if args.preserve_color:
        result = keep_colours(result, to_uint8(content))
    write(result, args.out / f"{args.content.stem}_gatys_{'+'.join(s.stem for s in args.style)}.png")
    return 0
