"""``stylecam lab patches``: the image patches that most activate one VGG-16 unit.

Over a folder of photos, each photo's strongest response of one channel at one layer is
found and the input patch that unit sees (its receptive field) is cut out; the top ones,
strongest first, form one picture (the lecture's "maximally activating patches").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from stylecam.models.data import ImageError, centre_square, load_style_image, to_uint8
from stylecam.models.lab.common import USER_ERRORS, add_vgg, parser, photos, start, write
from stylecam.models.vgg import LAYERS, RELU_INDEX, VGGFeatures, load_vgg

__all__ = ["USER_ERRORS", "Patch", "main", "receptive_field", "top_patches"]


@dataclass(frozen=True)
class Patch:
    activation: float
    path: Path
    centre: tuple[int, int]  # (y, x) in the photo as read
    pixels: np.ndarray  # uint8 RGB, the receptive field (clipped at the borders)


def receptive_field(vgg: VGGFeatures, layer: str) -> tuple[int, int]:
    """(size, stride) in input pixels of one unit at ``layer``."""
    size, stride = 1, 1
    for module in vgg.features[: RELU_INDEX[layer] + 1]:
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
            s = module.stride if isinstance(module.stride, int) else module.stride[0]
            size, stride = size + (k - 1) * stride, stride * s
    return size, stride


def top_patches(vgg: VGGFeatures, paths: list[Path], layer: str, channel: int, size: int, count: int) -> list[Patch]:
    """Each photo's strongest response of (layer, channel); the ``count`` strongest photos'
    patches, strongest first."""
    field, stride = receptive_field(vgg, layer)
    found = []
    with torch.inference_mode():
        for path in tqdm(paths, desc="patches", unit="image", dynamic_ncols=True):
            image = load_style_image(path, size)
            response = vgg(image, upto=layer)[layer][0]
            if not 0 <= channel < response.shape[0]:
                raise ImageError(f"--channel {channel}: {layer} has channels 0..{response.shape[0] - 1}")
            value, index = response[channel].flatten().max(0)
            y, x = divmod(int(index), response.shape[-1])
            cy, cx = y * stride + stride // 2, x * stride + stride // 2
            rgb = to_uint8(image)
            half = field // 2
            pixels = rgb[max(0, cy - half):cy + half + 1, max(0, cx - half):cx + half + 1]
            found.append(Patch(float(value), path, (cy, cx), pixels))
    return sorted(found, key=lambda p: -p.activation)[:count]


def main(argv: list[str], prog: str = "stylecam lab patches") -> int:
    p = parser(prog, __doc__.splitlines()[0].split(": ", 1)[1], size=224, steps=1)
    p.add_argument("folder", type=Path, metavar="DIR", help="photos to search (recursively)")
    p.add_argument("--layer", choices=LAYERS, default="relu3_3", help="VGG layer (default: relu3_3)")
    p.add_argument("--channel", type=int, default=0, help="channel of that layer (default: 0)")
    p.add_argument("--top", type=int, default=8, help="patches to keep (default: 8)")
    p.add_argument("--tile", type=int, default=96, help="side of each patch in the picture, pixels (default: 96)")
    add_vgg(p)
    args = p.parse_args(argv)
    start(args)
    vgg = load_vgg(args.vgg)
    field, stride = receptive_field(vgg, args.layer)
    best = top_patches(vgg, photos(args.folder), args.layer, args.channel, args.size, args.top)
    print(f"{args.layer} channel {args.channel}: receptive field {field} px, stride {stride}; activations "
          + ", ".join(f"{p.activation:.3g}" for p in best))
    for p in best:
        print(f"  {p.activation:.4g}  {p.path.name} at (y {p.centre[0]}, x {p.centre[1]})")
    gap = np.full((args.tile, 2, 3), 255, np.uint8)
    row = np.hstack([part for p in best for part in (centre_square(p.pixels, args.tile), gap)][:-1])
    write(row, args.out / f"patches_{args.layer}_{args.channel}.png")
    return 0
