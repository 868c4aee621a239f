"""Building blocks of the style transformers.

Every block takes ``(x, style_weights)`` so one body serves single-style networks
(instance norm, weights ignored) and multi-style ones (conditional instance norm).
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


def make_norm(channels: int, num_styles: int) -> nn.Module:
    return ConditionalInstanceNorm2d(channels, num_styles) if num_styles > 1 else InstanceNorm(channels)


class ConvNormAct(nn.Module):
    """Reflection-padded conv, optional nearest 2x upsample before it, norm, optional ReLU."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: bool = False,
        num_styles: int = 1, relu: bool = True,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.norm = make_norm(cout, num_styles)
        self.relu = relu

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.norm(self.conv(self.pad(x)), style_weights)
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm layers with an identity shortcut (He et al., as in Johnson et al.)."""

    def __init__(self, channels: int, num_styles: int = 1) -> None:
        super().__init__()
        self.a = ConvNormAct(channels, channels, 3, num_styles=num_styles)
        self.b = ConvNormAct(channels, channels, 3, num_styles=num_styles, relu=False)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.b(self.a(x, style_weights), style_weights)
