"""Lens graphs for onnxruntime: a lens (``export.lenses``) traced, exported and verified.

Every lens takes FRAME, uint8 (H, W, 3) RGB of any size, resized inside the graph to the
classifier's input exactly as ``export.saliency.preprocess`` does, plus its own extra
inputs. Nothing is written unless onnxruntime reproduces the lens's ``run`` by the lens's
own rule (``compare``).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from stylecam.export.gradients import trace_joint
from stylecam.export.lenses import Lens, LensParity, lens_class
from stylecam.export.lenses.base import Arrays
from stylecam.export.onnx import OPSET, export_onnx, frame_dims
from stylecam.export.saliency import DEFAULT_CLASSIFIER, check_frames, preprocess
from stylecam.export.verify import verify
from stylecam.export.weight_store import externalise
from stylecam.models.builders import UnknownModel
from stylecam.models.classifier import ImageClassifier
from stylecam.models.factory import create_model
from stylecam.server.model_card import FRAME, ModelCard, TensorSpec, sha256_of, write_card


def create_lens(name: str, model: ImageClassifier | None = None, graph: Path | None = None) -> Lens:
    """A lens by name on ``model`` (default: the lens classifier); an unknown name lists the
    valid ones. ``graph``: an exported graph whose stored data (the neighbours' gallery) it takes."""
    return lens_class(name).create(model or create_model(DEFAULT_CLASSIFIER), graph)


def reference(lens: Lens, frame: np.ndarray, **inputs: np.ndarray) -> Arrays:
    """The PyTorch answer the graph must reproduce for ``frame`` (uint8 (H, W, 3)) and the
    extra inputs (TARGET, LAYER_WEIGHTS), keyed like the graph's outputs."""
    image = preprocess(torch.from_numpy(np.ascontiguousarray(frame)), lens.size)
    extra = [torch.from_numpy(np.asarray(inputs[spec.name])) for spec in lens.inputs]
    outputs = lens.run(image, *extra)
    return {spec.name: out.detach().numpy() for spec, out in zip(lens.outputs, outputs)}


def compare(method: str, got: Arrays, wanted: Arrays, options: dict[str, Any] | None = None) -> LensParity:
    """onnxruntime's outputs against ``reference``'s by the lens's rule (its ``compare``);
    ``options`` are the card's (fool reads its budget there). ``.ok``: it passes."""
    return lens_class(method).compare(got, wanted, options or {})


class LensGraph(nn.Module):
    """(frame uint8 (H, W, 3)[, extra]) -> the lens's outputs; ``joint`` is ``Lens.run``
    traced at the classifier's input size, backward passes unrolled. One named optional
    extra input, not ``*extra``: the exporter cannot give varargs dynamic shapes."""

    def __init__(self, joint: torch.fx.GraphModule, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.joint = joint
        self.input_size = input_size

    def forward(self, frame: torch.Tensor, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        image = preprocess(frame, self.input_size)
        return tuple(self.joint(image) if extra is None else self.joint(image, extra))


def example_inputs(lens: Lens) -> list[torch.Tensor]:
    """Extra inputs for tracing: the first check case's."""
    first = lens.check_inputs()[0]
    return [torch.from_numpy(first[spec.name]) for spec in lens.inputs]


def build_graph(lens: Lens) -> LensGraph:
    joint = trace_joint(lens.run, torch.rand(1, 3, *lens.size), *example_inputs(lens))
    joint.graph.eliminate_dead_code()
    joint.recompile()
    return LensGraph(joint, lens.size)


def strip_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node stack traces and fx names: they are most of an unrolled
    graph's bytes (about 1 kB a node) and mean nothing to onnxruntime."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""


def check(onnx_path: Path, lens: Lens) -> list[LensParity]:
    """``export.verify`` on ``check_frames`` with the lens's extra check inputs and rule."""
    cases = [{FRAME: frame, **extra} for frame, extra in zip(check_frames(lens.size), lens.check_inputs())]
    extras = [spec.name for spec in lens.inputs]
    return verify(onnx_path, cases,
                  lambda feeds: reference(lens, feeds[FRAME], **{n: feeds[n] for n in extras}),
                  lambda got, wanted: compare(lens.name, got, wanted, lens.options))


def card_for(lens: Lens, classifier: str, onnx_path: Path, labels: str, parity: list[LensParity]) -> ModelCard:
    cfg = lens.model.pretrained_cfg
    frame = TensorSpec(FRAME, "uint8", ("H", "W", 3), "RGB frame of any size; resized inside the graph")
    return ModelCard(
        name=onnx_path.stem, kind="lens", onnx=onnx_path.name, sha256=sha256_of(onnx_path),
        inputs=(frame, *lens.inputs), outputs=lens.outputs, method=lens.name, classifier=classifier,
        labels=labels, input_size=lens.size, value_range=(0.0, 255.0), options=lens.options,
        source={"weights": cfg.source, "licence": cfg.licence, "opset": OPSET,
                "parity": [p.measures for p in parity]},
    )


def externalise_weights(graph: onnx.ModelProto, store: Path, keep: Sequence[onnx.TensorProto]) -> dict[str, dict[str, object]]:
    """``weight_store.externalise`` for all initializers but ``keep``, which belong to this
    graph alone and stay inside it (a neighbours gallery would only grow the shared store)."""
    for tensor in keep:
        graph.graph.initializer.remove(tensor)
    external = externalise(graph, store)
    graph.graph.initializer.extend(keep)
    return external


def export_lens(name: str, out_dir: Path, classifier: str = DEFAULT_CLASSIFIER, photos: Sequence[Path] = (),
                tile: int = 96, quality: int = 80) -> Path:
    """Build, export and verify one lens; returns the .onnx path. The graph, its card, the
    class names and (neighbors) the gallery sprite appear in ``out_dir`` only after
    verification passed; the classifier's weights go to its shared store there."""
    kind = lens_class(name)  # an unknown lens, and a classifier without a walk, are said before loading any weights
    if classifier != DEFAULT_CLASSIFIER:
        raise UnknownModel(f"lenses walk EfficientNet-Lite0's layers; {classifier} has none: use --classifier {DEFAULT_CLASSIFIER}")
    model = create_model(classifier)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="stylecam-lens-") as tmp:
        staged = Path(tmp) / f"lens_{name}.onnx"
        sprite = staged.with_suffix(".jpg")
        lens = kind.from_photos(model, photos, sprite, tile, quality)
        extras = [spec.name for spec in lens.inputs]
        export_onnx(build_graph(lens), (torch.zeros(240, 320, 3, dtype=torch.uint8), *example_inputs(lens)), staged,
                    [FRAME, *extras], [spec.name for spec in lens.outputs],
                    {"frame": frame_dims(), **dict.fromkeys(["extra"][:len(extras)])}, fuse=False)
        graph = onnx.load(staged)
        strip_metadata(graph)
        onnx.save(graph, staged)
        parity = check(staged, lens)
        out_dir.mkdir(parents=True, exist_ok=True)
        inside = lens.kept_inside(graph)
        external = externalise_weights(graph, out_dir / f"{classifier}.weights", inside)
        onnx.save(graph, staged)
        labels = model.pretrained_cfg.labels
        card = card_for(lens, classifier, staged, labels.name, parity)
        card = write_card(dataclasses.replace(card, external_data=external), Path(tmp))
        shutil.copyfile(labels, Path(tmp) / labels.name)
        for path in (staged, card, Path(tmp) / labels.name, *([sprite] if sprite.exists() else [])):
            shutil.move(str(path), out_dir / path.name)
    return out_dir / staged.name
