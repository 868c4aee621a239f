"""Self-describing checkpoints: enough to rebuild, resume, export and reproduce a network."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stylecam.models.data import STYLE_VALUE_RANGE
from stylecam.models.factory import create_model

FORMAT = "stylecam-checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a usable stylecam checkpoint; the message says why."""


@dataclass
class Checkpoint:
    """A trained (or training) style network and how it came to be."""

    arch: str
    kwargs: dict[str, Any]
    styles: list[str]
    state_dict: dict[str, torch.Tensor]
    step: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    command: str = ""  # the `stylecam train` invocation that wrote this checkpoint
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier invocations a --resume continued
    vgg_source: str = ""
    wall_seconds: float = 0.0
    images_seen: int = 0  # content crops trained on, over every run a --resume continued
    images_by_kind: dict[str, int] = field(default_factory=dict)  # the same, per step kind (perceptual, teacher)
    teacher: dict[str, Any] = field(default_factory=dict)  # the teach manifest of the renders it learnt from
    optimizer: dict[str, Any] | None = None
    value_range: tuple[float, float] = STYLE_VALUE_RANGE

    def build(self) -> nn.Module:
        """The network with these weights, in eval mode."""
        model = create_model(self.arch, **self.kwargs)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise CheckpointError(f"weights do not fit architecture {self.arch!r} {self.kwargs}: {first}") from None
        return model.eval()

    def save(self, path: Path) -> None:
        """Write atomically: a crash mid-write never leaves a truncated checkpoint."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        payload = {"format": FORMAT, **{k: getattr(self, k) for k in self.__dataclass_fields__}}
        payload["value_range"] = list(self.value_range)
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises pickle, zip and runtime errors for foreign files
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a stylecam checkpoint (written by `stylecam train`)")
        payload.pop("format")
        payload["value_range"] = tuple(payload["value_range"])
        ckpt = cls(**{k: v for k, v in payload.items() if k in cls.__dataclass_fields__})
        if not ckpt.images_seen:  # written before the count existed: one batch size for all its steps
            ckpt.images_seen = ckpt.step * ckpt.config.get("batch_size", 0)
        return ckpt
