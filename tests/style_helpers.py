"""Small real checkpoints for the style tests (untrained weights, made deterministic)."""

from __future__ import annotations

from pathlib import Path

import torch

from models.checkpoint import Checkpoint
from models.registry import create_model

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
