"""torch.onnx.export with dynamic frame height and width and a pinned opset."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnxscript.optimizer
import torch
from torch import nn

OPSET = 18
MIN_SIDE = 16
MAX_SIDE = 4096


def frame_dims() -> dict[int, torch.export.Dim]:
    """Dynamic H and W of an HxWx3 frame input."""
    return {0: torch.export.Dim("H", min=MIN_SIDE, max=MAX_SIDE), 1: torch.export.Dim("W", min=MIN_SIDE, max=MAX_SIDE)}


def export_onnx(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
    output_names: list[str], dynamic_shapes: tuple | dict, fuse: bool = True,
) -> None:
    """Export through the dynamo exporter; raises on any exporter failure, writes only ``path``.

    ``fuse=False`` folds constants but skips the exporter's rewrite rules (onnxruntime still
    fuses at load): they fold batch norms into conv weights wherever the backward pass does
    not need them, and then graphs of one classifier would no longer share weights."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(), args, dynamo=True, input_names=input_names, output_names=output_names,
            dynamic_shapes=dynamic_shapes, opset_version=OPSET, external_data=False, verbose=False,
            optimize=fuse,
        )
        if not fuse:
            onnxscript.optimizer.fold_constants_ir(program.model)
            onnxscript.optimizer.remove_unused_nodes(program.model)
    program.save(str(path), external_data=False)
