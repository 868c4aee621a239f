"""``neighbors``: the gallery photos nearest the frame in feature space (cosine)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import torch
import torch.nn.functional as F

from stylecam.export.lenses.base import Arrays, Lens, LensParity, register_lens
from stylecam.export.saliency import preprocess
from stylecam.models.classifier import ImageClassifier
from stylecam.models.data import ImageError, centre_square, photos_under, read_rgb
from stylecam.server.model_card import NEIGHBORS, SIMILARITY, TensorSpec

COSINE_TOLERANCE = 1e-4


def penultimate(model: ImageClassifier, image: torch.Tensor) -> torch.Tensor:
    """L2-normalised global average of the last conv block (B, C), as lab's ``embed``."""
    return F.normalize(model.features(image).mean((2, 3)), dim=1)


@register_lens
class Neighbors(Lens):
    """The ``k`` gallery photos nearest the frame by the cosine of penultimate features.
    The gallery's rows are stored in half precision, half the bytes (rounding moves a
    cosine by ~1e-3 at most), and cast up in the graph; the exporter folds that cast for
    galleries under 8192 numbers (six photos), which then stay float32."""

    name = "neighbors"
    summary = "the 5 gallery photos nearest the frame in feature space; its thumbnails go beside the graph as lens_neighbors.jpg"
    needs_photos = True

    def __init__(self, model: ImageClassifier, gallery: np.ndarray, k: int = 5) -> None:
        super().__init__(model)
        if len(gallery) < k:
            raise ImageError(f"a gallery needs at least {k} photos; it has {len(gallery)}")
        self.gallery = torch.from_numpy(np.asarray(gallery, np.float16))
        self.k = k
        self.options = {"k": k}

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(NEIGHBORS, "int64", (self.k,), "gallery indices (options['photos']), nearest first"),
                TensorSpec(SIMILARITY, "float32", (self.k,), "their cosine similarity to the frame"))

    def run(self, image: torch.Tensor, *extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            cosine = self.gallery.to(image.dtype) @ penultimate(self.model, image)[0]
            similarity, index = torch.topk(cosine, self.k)
        return index, similarity

    @staticmethod
    def compare(got: Arrays, wanted: Arrays, options: dict[str, Any]) -> LensParity:
        """The same gallery indices in the same order, cosines within COSINE_TOLERANCE."""
        measures = {"different indices": float((got[NEIGHBORS] != wanted[NEIGHBORS]).sum()),
                    "cosine error": float(np.abs(got[SIMILARITY] - wanted[SIMILARITY]).max())}
        return LensParity("neighbors", measures, {"different indices": 0.0, "cosine error": COSINE_TOLERANCE})

    @classmethod
    def create(cls, model: ImageClassifier, graph: Path | None = None) -> Lens:
        if graph is None:
            raise ImageError("the neighbors lens needs a gallery: the graph that stores it")
        return cls(model, stored_gallery(graph))

    @classmethod
    def from_photos(cls, model: ImageClassifier, photos: Sequence[Path], sprite: Path, tile: int, quality: int) -> Lens:
        """The lens over the photos under ``photos``, their thumbnails in ``sprite`` and the
        card options that let the page find each one there."""
        if not photos:
            raise ImageError("the neighbors lens needs photos: --photos DIR [DIR ...]")
        paths = photos_under(photos)
        lens = cls(model, build_gallery(model, paths))
        columns = write_sprite(paths, sprite, tile, quality)
        lens.options |= {"gallery": sprite.name, "tile": tile, "columns": columns, "count": len(paths),
                         "photos": [p.name for p in paths]}
        return lens

    def kept_inside(self, graph: onnx.ModelProto) -> list[onnx.TensorProto]:
        """The gallery: it would only grow the shared store."""
        return gallery_tensors(graph)


def build_gallery(model: ImageClassifier, paths: Sequence[Path]) -> np.ndarray:
    """Each photo's penultimate features (N, C), as the graph computes the frame's (same resize)."""
    size = model.pretrained_cfg.input_size
    with torch.inference_mode():
        rows = [penultimate(model, preprocess(torch.from_numpy(read_rgb(p)), size))[0] for p in paths]
    return torch.stack(rows).numpy()


def write_sprite(paths: Sequence[Path], path: Path, tile: int, quality: int) -> int:
    """Square centre crops of ``paths``, ``tile`` px, row by row in a JPEG; returns the columns."""
    columns = int(np.ceil(np.sqrt(len(paths))))
    rows = -(-len(paths) // columns)
    sheet = np.full((rows * tile, columns * tile, 3), 255, np.uint8)
    for i, p in enumerate(paths):
        y, x = divmod(i, columns)
        sheet[y * tile:(y + 1) * tile, x * tile:(x + 1) * tile] = centre_square(read_rgb(p), tile)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise ImageError(f"{path}: cannot write the gallery sprite")
    return columns


def gallery_tensors(graph: onnx.ModelProto) -> list[onnx.TensorProto]:
    """A neighbours graph's gallery: its one 2-D initializer (half precision, or float32
    when the exporter folded the cast of a gallery under 8192 numbers)."""
    return [t for t in graph.graph.initializer if len(t.dims) == 2]


def stored_gallery(onnx_path: Path) -> np.ndarray:
    """The gallery features (N, C) a neighbours graph holds, for ``reference``."""
    tensors = gallery_tensors(onnx.load(str(onnx_path), load_external_data=False))
    if len(tensors) != 1:
        raise ValueError(f"{onnx_path}: not a neighbours graph (no single 2-D gallery)")
    return onnx.numpy_helper.to_array(tensors[0]).astype(np.float32)
