"""Feedforward style transformers: Johnson et al. 2016, and ``rt`` and ``lite`` for real time on CPUs.

Input and output are RGB in [0, 1] (``models.data.STYLE_VALUE_RANGE``), NCHW, any H and W:
stride-2 downsamples and as many 2x upsamples give at least the input size, and the
output is cropped back to it, so odd sizes need no padding.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from stylecam.models.builders import register_model
from stylecam.models.layers import ConvNormAct, ResidualBlock, SubPixelConv


class TransformerNet(nn.Module):
    """Down (stride 2 twice), residual blocks, up (nearest 2x twice), conv to RGB.

    The output is linear, starting at mid-grey; consumers clamp it to [0, 1]. A tanh
    output has no gradient where it saturates; training keeps outputs in range with
    ``losses.out_of_range`` instead."""

    def __init__(
        self, channels: tuple[int, int, int], num_residual: int, kernel_in: int, kernel_out: int,
        num_styles: int = 1,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.num_styles = num_styles
        self.layers = nn.ModuleList([
            ConvNormAct(3, c1, kernel_in, num_styles=num_styles),
            ConvNormAct(c1, c2, 3, stride=2, num_styles=num_styles),
            ConvNormAct(c2, c3, 3, stride=2, num_styles=num_styles),
            *[ResidualBlock(c3, num_styles) for _ in range(num_residual)],
            ConvNormAct(c3, c2, 3, upsample=True, num_styles=num_styles),
            ConvNormAct(c2, c1, 3, upsample=True, num_styles=num_styles),
        ])
        self.pad_out = nn.ReflectionPad2d(kernel_out // 2)
        self.conv_out = nn.Conv2d(c1, 3, kernel_out)
        nn.init.constant_(self.conv_out.bias, 0.5)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = x
        for layer in self.layers:
            y = layer(y, style_weights)
        y = self.conv_out(self.pad_out(y))
        return y[..., :h, :w]

    def folded(self) -> TransformerNet:
        """A copy for inference that computes the same function faster (``SubPixelConv``)."""
        return _fold_layers(copy.deepcopy(self))


def _fold_layers(net: nn.Module) -> nn.Module:
    for layer in net.modules():
        if isinstance(layer, ConvNormAct):
            layer.fold_upsampling()
    return net.eval()


def strided_encoder(widths: tuple[int, ...], kernel_in: int, num_styles: int, antialias: bool = False) -> nn.ModuleList:
    """RGB down to ``widths[-1]`` channels, halving the resolution at every conv."""
    ins = (3, *widths[:-1])
    return nn.ModuleList([ConvNormAct(cin, cout, kernel_in if i == 0 else 3, stride=2, num_styles=num_styles, antialias=antialias)
                          for i, (cin, cout) in enumerate(zip(ins, widths))])


def upsampling_decoder(widths: tuple[int, ...], num_styles: int, antialias: bool = False) -> nn.ModuleList:
    """Nearest-2x upsample + 3x3 conv from ``widths[0]`` channels through each of the rest."""
    return nn.ModuleList([ConvNormAct(cin, cout, 3, upsample=True, num_styles=num_styles, antialias=antialias)
                          for cin, cout in zip(widths, widths[1:])])


class SkipNet(nn.Module):
    """Down to 1/8 resolution, residual blocks there, back up with additive skips.

    Built for CPUs: the residual blocks, where the strokes are made, run on 1/64 of the
    pixels with a receptive field of about 150 px; only one stride-2 conv and one thin 3x3
    conv touch full resolution. The skips (plain additions, no extra multiply-adds) carry
    the 1/2 and 1/4 resolution encoder features to the decoder, so faces and edges survive
    the narrow 1/8 bottleneck. Upsampling is nearest + conv (no transposed conv: no grid).
    """

    def __init__(self, channels: tuple[int, int, int], num_residual: int, kernel_in: int, num_styles: int = 1) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.num_styles = num_styles
        self.down = strided_encoder((c1, c2, c3), kernel_in, num_styles)
        self.blocks = nn.ModuleList([ResidualBlock(c3, num_styles) for _ in range(num_residual)])
        self.up = upsampling_decoder((c3, c2, c1), num_styles)
        self.pad_out = nn.ReflectionPad2d(1)
        self.conv_out = nn.Conv2d(c1, 3, 3)
        nn.init.constant_(self.conv_out.bias, 0.5)
        self.upsample_out = True  # False once folded: conv_out then upsamples itself

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        half = self.down[0](x, style_weights)
        quarter = self.down[1](half, style_weights)
        y = self.down[2](quarter, style_weights)
        for block in self.blocks:
            y = block(y, style_weights)
        y = self.up[0](y, style_weights)[..., : quarter.shape[-2], : quarter.shape[-1]] + quarter
        y = self.up[1](y, style_weights)[..., : half.shape[-2], : half.shape[-1]] + half
        if self.upsample_out:
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
        y = self.conv_out(self.pad_out(y))
        return y[..., :h, :w]

    def folded(self) -> SkipNet:
        """A copy for inference that computes the same function faster (``SubPixelConv``):
        the two upsampling layers and the full-resolution output conv."""
        net = copy.deepcopy(self)
        net.conv_out, net.pad_out, net.upsample_out = SubPixelConv(net.conv_out), nn.Identity(), False
        return _fold_layers(net)


class PaintNet(nn.Module):
    """Strokes drawn at 1/4, 1/2 and full resolution, where brush texture lives.

    ``SkipNet`` does its residual work at 1/8 and reaches full resolution through one thin
    3x3 conv, so it cannot draw marks finer than about 8 px and smears. Here a 5x5 stride-2
    conv starts at 1/2, the residual blocks run at 1/4 (as Johnson et al.'s and the peer's
    ``multistyle26`` do), and the decoder climbs back through 1/2 to a full-resolution conv
    of ``channels[0]`` features that draws the brush texture; the 1/2 encoder features are
    added back on the way (no extra multiply-adds), so faces keep their edges. Nearest
    upsample + conv (no transposed conv, no grid), folded at export.
    """

    def __init__(self, channels: tuple[int, int, int], num_residual: int, num_styles: int = 1, antialias: bool = False) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.num_styles = num_styles
        self.down = strided_encoder((c1, c2), 5, num_styles, antialias)
        self.blocks = nn.ModuleList([ResidualBlock(c2, num_styles) for _ in range(num_residual)])
        self.up = upsampling_decoder((c2, c1, c0), num_styles, antialias)
        self.pad_out = nn.ReflectionPad2d(1)
        self.conv_out = nn.Conv2d(c0, 3, 3)
        nn.init.constant_(self.conv_out.bias, 0.5)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        half = self.down[0](x, style_weights)
        y = self.down[1](half, style_weights)
        for block in self.blocks:
            y = block(y, style_weights)
        y = self.up[0](y, style_weights)[..., : half.shape[-2], : half.shape[-1]] + half
        y = self.conv_out(self.pad_out(self.up[1](y, style_weights)))
        return y[..., :h, :w]

    def folded(self) -> PaintNet:
        """A copy for inference that computes the same function faster (``SubPixelConv``)."""
        return _fold_layers(copy.deepcopy(self))


@register_model
def johnson(num_styles: int = 1) -> TransformerNet:
    """Johnson et al. 2016: 32/64/128 channels, five residual blocks, 9x9 conv in and out."""
    return TransformerNet((32, 64, 128), num_residual=5, kernel_in=9, kernel_out=9, num_styles=num_styles)


@register_model
def lite(num_styles: int = 1) -> TransformerNet:
    """Real-time on a 2-core CPU: 16/32/64 channels, three residual blocks, 5x5 conv out."""
    return TransformerNet((16, 32, 64), num_residual=3, kernel_in=9, kernel_out=5, num_styles=num_styles)


@register_model
def rt(num_styles: int = 1) -> SkipNet:
    """The CPU real-time default: 16/32/64 channels, four residual blocks at 1/8 resolution."""
    return SkipNet((16, 32, 64), num_residual=4, kernel_in=5, num_styles=num_styles)


@register_model
def paint(num_styles: int = 1) -> PaintNet:
    """Brush strokes on a CPU: 5x5 stride-2 conv in to 24, two residual blocks of 48 at 1/4, back up
    through 24 at 1/2 to an 8-channel full-resolution head."""
    return PaintNet((8, 24, 48), num_residual=2, num_styles=num_styles)


@register_model
def paint_aa(num_styles: int = 1) -> PaintNet:
    """``paint`` with anti-aliased resampling: its strokes move with the picture. ``paint``
    draws its fine texture on the 4 px grid of its two stride-2 convs, so a pan of 1-3 px
    re-draws it (shimmer 4-12 levels) while a pan of 4 or 8 px barely does (0.4-1.1).
    Same weights; a ``paint`` checkpoint loads into it, to be fine-tuned."""
    return PaintNet((8, 24, 48), num_residual=2, num_styles=num_styles, antialias=True)


BODIES = {"johnson": johnson, "lite": lite, "rt": rt, "paint": paint, "paint_aa": paint_aa}


@register_model
def multistyle(body: str = "lite", num_styles: int = 2) -> nn.Module:
    """Dumoulin et al. 2017: any body with conditional instance norm."""
    if body not in BODIES:
        raise ValueError(f"unknown multistyle body {body!r}; valid: {', '.join(BODIES)}")
    if num_styles < 2:
        raise ValueError(f"a multistyle network needs at least 2 styles, got {num_styles}")
    return BODIES[body](num_styles=num_styles)


def macs_per_pixel(model: nn.Module, height: int = 256, width: int = 256) -> float:
    """Convolution multiply-adds of one forward pass, per input pixel (norms and ReLUs excluded)."""
    total = 0

    def count(conv: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = conv.kernel_size
        total += output.numel() * (conv.in_channels // conv.groups) * kh * kw

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            num_styles = getattr(model, "num_styles", 1)
            weights = torch.full((num_styles,), 1.0 / num_styles) if num_styles > 1 else None
            model(torch.zeros(1, 3, height, width), weights)
    finally:
        for hook in hooks:
            hook.remove()
    return total / (height * width)
