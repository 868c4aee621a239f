"""Building blocks of the style transformers.

Every block takes ``(x, style_weights)`` so one body serves single-style networks
(instance norm, weights ignored) and multi-style ones (conditional instance norm, or, for
export and for learning a style, ``StyleVectorNorm`` fed a style vector in their place).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _affine_instance_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The one formula both norms share, so one-hot CIN equals single-style IN bit for bit."""
    return F.instance_norm(x, eps=1e-5) * gamma.unsqueeze(-1).unsqueeze(-1) + beta.unsqueeze(-1).unsqueeze(-1)


class InstanceNorm(nn.Module):
    """Instance norm with a learned affine (Ulyanov et al. 2016); ignores style weights."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        return _affine_instance_norm(x, self.weight.unsqueeze(0), self.bias.unsqueeze(0))


class ConditionalInstanceNorm2d(nn.Module):
    """Dumoulin et al. 2017: one (gamma, beta) per style, mixed by ``style_weights``.

    ``style_weights`` is (N,) for the whole batch or (B, N) per sample; a one-hot row
    reproduces that style's gamma and beta exactly, other rows blend them linearly.
    """

    def __init__(self, channels: int, num_styles: int) -> None:
        super().__init__()
        self.num_styles = num_styles
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        if style_weights is None:
            raise ValueError("a multi-style network needs style_weights (one float per style)")
        w = style_weights.reshape(-1, self.num_styles).to(x.dtype)
        return _affine_instance_norm(x, w @ self.gamma, w @ self.beta)


class StyleVectorNorm(nn.Module):
    """Instance norm whose (gamma, beta) come from a style vector fed in with the frame.

    A CIN network's style is nothing but its norms' (gamma, beta) (Dumoulin et al. 2017), so
    with the table taken out of the weights a style is data: blending is mixing vectors, and
    a new style is a new vector, learnt with the shared weights frozen. This layer reads
    gamma at ``offset`` and beta right after it, from ``style`` (D,) or (B, D)."""

    def __init__(self, channels: int, offset: int) -> None:
        super().__init__()
        self.channels, self.offset = channels, offset

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if style is None:
            raise ValueError("a style-vector network needs its style vector")
        s = style.reshape(-1, style.shape[-1]).to(x.dtype)
        start, mid, end = self.offset, self.offset + self.channels, self.offset + 2 * self.channels
        return _affine_instance_norm(x, s[:, start:mid], s[:, mid:end])


def style_table(net: nn.Module) -> torch.Tensor:
    """(N, D): row i is style i's vector, every CIN layer's gamma then beta, in module order."""
    norms = [m for m in net.modules() if isinstance(m, ConditionalInstanceNorm2d)]
    if not norms:
        raise ValueError("no conditional instance norm in this network: it has no style vectors")
    return torch.cat([torch.cat([m.gamma, m.beta], 1) for m in norms], 1).detach()


def with_style_input(net: nn.Module) -> nn.Module:
    """``net`` with each CIN layer replaced by a ``StyleVectorNorm`` reading its own slice of
    the ``style_table`` layout, in place: fed ``weights @ style_table(net)`` (taken before),
    it computes what ``net`` computes with ``weights``."""
    offset = 0
    for name, layer in list(net.named_modules()):  # the order style_table reads them in
        if isinstance(layer, ConditionalInstanceNorm2d):
            parent, _, attr = name.rpartition(".")
            channels = layer.gamma.shape[1]
            setattr(net.get_submodule(parent), attr, StyleVectorNorm(channels, offset))
            offset += 2 * channels
    return net


def make_norm(channels: int, num_styles: int) -> nn.Module:
    return ConditionalInstanceNorm2d(channels, num_styles) if num_styles > 1 else InstanceNorm(channels)


# For output row 2i + a of a 3x3 conv over a nearest-2x-upsampled, reflect-padded input:
# PHASE_TAPS[a, d + 1, r] says whether kernel row r reads input row i + d. Columns alike.
PHASE_TAPS = torch.tensor([[[1, 0, 0], [0, 1, 1], [0, 0, 0]],
                           [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], dtype=torch.float64)


class SubPixelConv(nn.Module):
    """``conv(reflect_pad_1(upsample_2x_nearest(x)))`` for a 3x3 ``conv``, computed at x's
    own resolution: one 3x3 conv with four times the outputs (one set per output pixel
    phase) over the edge-padded input, then a pixel shuffle. Reflecting the upsampled image
    by one pixel repeats the input's edge, so the two agree exactly, up to float rounding.
    Same multiply-adds as before; none of the 4x-sized upsampled and padded copies, so on a
    CPU, where those copies cost as much as the conv, a frame is about 20% faster."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (0, 0) or conv.bias is None:
            raise ValueError(f"SubPixelConv folds an unpadded 3x3 stride-1 conv with a bias, not {conv}")
        out_channels, in_channels = conv.weight.shape[:2]
        weight = torch.einsum("adr,bes,ocrs->oabcde", PHASE_TAPS, PHASE_TAPS, conv.weight.detach().double())
        self.conv = nn.Conv2d(in_channels, 4 * out_channels, 3).to(conv.weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(weight.reshape(4 * out_channels, in_channels, 3, 3))
            self.conv.bias.copy_(conv.bias.detach().repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate")), 2)


def binomial_blur(x: torch.Tensor) -> torch.Tensor:
    """The 3x3 binomial low-pass ([1, 2, 1] outer itself, over 16), per channel, reflection-padded:
    before a stride-2 conv it removes what subsampling would alias; after a nearest upsample,
    the copies' blocky grid."""
    taps = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (taps[:, None] * taps[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, groups=x.shape[1])


class ConvNormAct(nn.Module):
    """Reflection-padded conv, optional nearest 2x upsample before it, norm, optional ReLU.

    ``antialias``: a ``binomial_blur`` right before the conv of a resampling layer (stride 2,
    or after the upsample), so the features move with the picture when it moves by less than
    the stride, instead of jumping between the grid's phases (Zhang 2019, "Making
    convolutional networks shift-invariant again"). No weights of its own: a network without
    it loads the same state."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: bool = False,
        num_styles: int = 1, relu: bool = True, antialias: bool = False,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.blur = antialias and (upsample or stride == 2)
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.norm = make_norm(cout, num_styles)
        self.relu = relu

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.blur:
            x = binomial_blur(x)
        x = self.norm(self.conv(self.pad(x)), style_weights)
        return F.relu(x) if self.relu else x

    def fold_upsampling(self) -> None:
        """For inference: an upsampling 3x3 layer becomes a ``SubPixelConv`` (same function);
        one with a blur between the upsample and the conv stays as it is."""
        if self.upsample and not self.blur and self.conv.kernel_size == (3, 3):
            self.conv, self.pad, self.upsample = SubPixelConv(self.conv), nn.Identity(), False


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm layers with an identity shortcut (He et al., as in Johnson et al.)."""

    def __init__(self, channels: int, num_styles: int = 1) -> None:
        super().__init__()
        self.a = ConvNormAct(channels, channels, 3, num_styles=num_styles)
        self.b = ConvNormAct(channels, channels, 3, num_styles=num_styles, relu=False)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.b(self.a(x, style_weights), style_weights)
