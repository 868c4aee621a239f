"""The suite's exports, each made once: ``torch.onnx.export`` (dynamo) is the slowest step of
an export here, and many tests export the same network (one untrained ``lite`` checkpoint
from seed 0 six times in test_export alone). An export whose inputs are all identical (the
module's class, every tensor of its state, its plain attributes, the example inputs' values,
the names, dynamic shapes and ``fuse``) gets a copy of the file the first one wrote; every
other step of the pipeline (verification, int8, fp16, cards, atomic writes) runs for real.
Anything not captured exactly (a function attribute, say) makes the key differ: a miss,
a real export."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def _bytes(value: torch.Tensor | np.ndarray) -> bytes:
    array = value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy() if isinstance(value, torch.Tensor) else value
    return np.ascontiguousarray(array).tobytes()


def _exact(value: Any) -> str:
    """repr, but arrays by all their bytes (repr elides the middle of a large one)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__}{tuple(value.shape)}{value.dtype}:{hashlib.sha256(_bytes(value)).hexdigest()}"
    return repr(value)


def _attributes(module: nn.Module) -> str:
    """The plain attributes of ``module`` and its submodules (what state_dict leaves out)."""
    parts = []
    for name, sub in module.named_modules():
        plain = {k: v for k, v in vars(sub).items() if not k.startswith("_") and k != "training"}
        parts.append(f"{name}:{type(sub).__qualname__}:{sorted((k, _exact(v)) for k, v in plain.items())}")
    return "\n".join(parts)


def export_key(module: nn.Module, args: tuple[Any, ...], *rest: Any) -> str:
    h = hashlib.sha256(_attributes(module).encode())
    for name, tensor in module.state_dict().items():
        h.update(name.encode() + _exact(tensor).encode())
    for arg in args:
        h.update(_exact(arg).encode())
    h.update(repr(rest).encode())
    return h.hexdigest()


def reusing(export: Callable[..., None], folder: Path) -> Callable[..., None]:
    """``export`` (export.onnx.export_onnx's signature), made once per distinct input."""

    def once(module: nn.Module, args: tuple[Any, ...], path: Path, *rest: Any, **options: Any) -> None:
        kept = folder / f"{export_key(module, args, rest, sorted(options.items()))}.onnx"
        if not kept.is_file():
            export(module, args, path, *rest, **options)
            shutil.copyfile(path, kept)
        else:
            shutil.copyfile(kept, path)

    return once
