"""Style networks as the server wants them: uint8 HxWx3 RGB frame in, stylized frame out.

The range conversion, layout change, clamping and rounding live inside the graph, so
the server does no per-frame pre- or post-processing of its own. What the graph takes
besides the frame is its kind's (``export.style_kinds``: a multi-style network's style
vector).
"""

from __future__ import annotations

import torch
from torch import nn

from stylecam.export.style_kinds import kind_for
from stylecam.models.checkpoint import Checkpoint


class StyleGraph(nn.Module):
    """frame (H, W, 3) uint8 [, style (D,) float32] -> stylized (H, W, 3) uint8."""

    def __init__(self, net: nn.Module, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = net.to(dtype).eval()
        self.dtype = dtype

    def forward(self, frame: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        x = frame.permute(2, 0, 1).unsqueeze(0).to(self.dtype) / 255.0
        if style is not None:
            style = style.to(self.dtype)
        y = self.net(x, style).float()
        return (y.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)[0].permute(1, 2, 0)


def style_graph(ckpt: Checkpoint, fp16: bool = False, fold: bool = False) -> StyleGraph:
    """The checkpoint's network as a graph of its kind (``export.style_kinds``); ``fold``
    (for export) computes its upsampling convs at the lower resolution (``SubPixelConv``): the
    same function, faster. Parity is checked against the unfolded network, the one that was trained."""
    net = kind_for(ckpt).network(ckpt)
    return StyleGraph(net.folded() if fold else net, torch.float16 if fp16 else torch.float32)


def example_inputs(ckpt: Checkpoint, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A random frame of the given size, and random values of its kind's other inputs."""
    gen = torch.Generator().manual_seed(seed)
    frame = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=gen)
    return (frame, *kind_for(ckpt).extra_inputs(ckpt, gen))
