"""The model card: the one contract between export/ (writes it) and server/ (reads it).

A card is a JSON file beside its ``.onnx`` file. It says what the graph takes and gives,
so the server needs nothing else: no torch, no checkpoint, no naming convention.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
CARD_VERSION = 2  # 2: multistyle graphs take a STYLE vector, and the card holds the named vectors
KINDS = ("style", "multistyle", "saliency", "lens")
# tensor names of the graph contract: style graphs take FRAME (and STYLE, a multistyle
# one's style vector) and give STYLIZED; saliency graphs take FRAME and TARGET and give
# LOGITS, SALIENCY and CLASS
FRAME, STYLE, STYLIZED = "frame", "style", "stylized"
TARGET, LOGITS, SALIENCY, CLASS = "target", "logits", "saliency", "class"
# lens graphs take FRAME (fool: and TARGET; dream: and LAYER_WEIGHTS) and give: activations
# one ACTIVATION + str(i) per layer in options["layers"]; neighbors NEIGHBORS + SIMILARITY;
# fool FOOLED + PERTURBATION + LOGITS; dream DREAMED
ACTIVATION, NEIGHBORS, SIMILARITY = "activation_", "neighbors", "similarity"
FOOLED, PERTURBATION, DREAMED, LAYER_WEIGHTS = "fooled", "perturbation", "dreamed", "layer_weights"
# the parity rule of fp32 and fp16 style graphs against their float32 network, at export and
# for fp16 graphs made at serving time (half.py): random frames at these (H, W), one of them
# not a multiple of 4, differ by at most PARITY_LEVELS on the 0-255 scale
PARITY_SIZES = ((96, 128), (61, 83))
PARITY_LEVELS = 1
DEFAULT_ZOO = Path(str(resources.files("stylecam.models") / "zoo"))  # the trained default models, shipped in the package


class CardError(ValueError):
    """A card that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as the server must feed or read it."""

    name: str
    dtype: str  # numpy dtype name: "uint8", "float32", "int64"
    shape: tuple[str | int, ...]  # symbolic dims are strings, e.g. ("H", "W", 3)
    description: str = ""


@dataclass(frozen=True)
class ModelCard:
    """Everything the server needs to run one exported graph."""

    name: str
    kind: str
    onnx: str  # file name, relative to the card
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precision: str = "fp32"
    layout: str = "HWC RGB"
    value_range: tuple[float, float] = (0.0, 255.0)
    styles: tuple[str, ...] = ()
    method: str | None = None
    classifier: str | None = None
    labels: str | None = None  # file with one class name per line, relative to the card
    input_size: tuple[int, int] | None = None  # (H, W) the classifier sees
    arch: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    # weights files the graph points into (ONNX external data), relative to the card:
    # {file: {"bytes": prefix the graph uses, "sha256": of that prefix}}
    external_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    # what a method needs beyond its tensors (JSON): a lens's layers, an occlusion grid, a gallery
    options: dict[str, Any] = field(default_factory=dict)
    # a multistyle graph's styles as its STYLE input takes them, one per name in ``styles``:
    # {name: {"vector": encode_vector(...), "provenance": {...}}}
    style_vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    # a style card's paintings, for the page's style picker: {style: {"title": "The Starry
    # Night", "thumbnail": a small JPEG beside the card (absent when export had no painting)}}
    paintings: dict[str, dict[str, str]] = field(default_factory=dict)
    version: int = CARD_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CardError(f"card {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for key in ("inputs", "outputs"):
            data[key] = tuple(TensorSpec(**{**spec, "shape": tuple(spec["shape"])}) for spec in data.get(key, ()))
        for key in ("styles", "value_range", "input_size"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def vector_table(self) -> np.ndarray:
        """(N, D) float32, row i the vector of ``styles[i]``; CardError when the card lacks them."""
        spec = self.input(STYLE)
        if spec is None or not isinstance(spec.shape[0], int):
            raise CardError(f"card {self.name!r} has no style-vector input ({STYLE!r} [D]); re-export it with `stylecam export style`")
        missing = [s for s in self.styles if s not in self.style_vectors]
        if missing:
            raise CardError(f"card {self.name!r} has no vector for {', '.join(missing)}; re-export it with `stylecam export style`")
        return np.stack([decode_vector(self.style_vectors[s]["vector"], spec.shape[0], f"card {self.name!r}, style {s!r}")
                         for s in self.styles])


def encode_vector(vector: np.ndarray) -> str:
    """A float32 vector as text for a JSON file: base64 of its little-endian bytes (exact, and
    a third the size of decimal digits)."""
    return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode("ascii")


def decode_vector(text: str, size: int, where: str) -> np.ndarray:
    """``encode_vector``'s inverse; CardError naming ``where`` when it is not ``size`` finite floats."""
    try:
        vector = np.frombuffer(base64.b64decode(text, validate=True), "<f4").astype(np.float32)
    except (ValueError, TypeError):
        raise CardError(f"{where}: the style vector is not base64 float32") from None
    if vector.shape != (size,) or not np.isfinite(vector).all():
        raise CardError(f"{where}: the style vector has {vector.size} values, not {size} finite ones")
    return vector


def sha256_of(path: Path, limit: int | None = None) -> str:
    """Of the whole file, or of its first ``limit`` bytes."""
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as f:
        while block := f.read(1 << 20 if remaining is None else min(1 << 20, remaining)):
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


def load_card(path: Path) -> ModelCard:
    """Read a card; a missing, malformed or foreign JSON file raises CardError."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise CardError(f"cannot read model card {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise CardError(f"{path} is not a model card (invalid JSON: {e.msg}); re-export it with `stylecam export`") from None
    if not isinstance(data, dict) or "kind" not in data or "onnx" not in data:
        raise CardError(f"{path} is not a model card (no 'kind'/'onnx'); re-export it with `stylecam export`")
    try:
        return ModelCard.from_dict(data)
    except TypeError as e:
        raise CardError(f"{path} is not a valid model card ({e}); re-export it with `stylecam export`") from None


def iter_cards(directory: Path, recursive: bool = True) -> Iterator[tuple[Path, ModelCard]]:
    """(card path, card) of every model card in ``directory``, by path; other JSON files
    (labels, benchmarks, configs) may live beside the models and are skipped."""
    pattern = "**/*.json" if recursive else "*.json"
    for path in sorted(Path(directory).glob(pattern)):
        try:
            yield path, load_card(path)
        except CardError as e:
            log.debug("skipping %s: %s", path, e)


def read_labels(card_path: Path, card: ModelCard) -> tuple[str, ...]:
    """The class names a saliency card points to, one per line (blank lines skipped);
    CardError when it names none or the file cannot be read."""
    if not card.labels:
        raise CardError(f"{card_path} names no labels file; re-export it with `stylecam export saliency`")
    path = Path(card_path).parent / card.labels
    try:
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError as e:
        raise CardError(f"cannot read class names {path}: {e.strerror}; re-export the model") from None


def card_path_for(onnx_path: Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def load_card_for_onnx(onnx_path: Path) -> ModelCard:
    """The card beside an .onnx file, checked against the file's sha256."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise CardError(f"model file {onnx_path} does not exist; pass an .onnx written by `stylecam export`")
    card = load_card(card_path_for(onnx_path))
    if sha256_of(onnx_path) != card.sha256:
        raise CardError(f"{onnx_path} does not match its card (sha256 differs): the file is corrupt or was replaced; re-export it")
    for name, pin in card.external_data.items():
        data = onnx_path.parent / name
        if not data.is_file() or data.stat().st_size < pin["bytes"]:
            raise CardError(f"{onnx_path} needs its weights file {data}, which is missing or truncated; re-export it")
        if sha256_of(data, limit=pin["bytes"]) != pin["sha256"]:
            raise CardError(f"{data} does not match the card of {onnx_path.name} (sha256 differs); re-export it")
    return card


def beside(folder: Path, name: object) -> Path | None:
    """The file a card in ``folder`` names (a gallery, a painting's thumbnail) when it lies
    directly beside the card and exists; None for anything else, a path with a folder in it
    (``../x``, ``/etc/x``) included. A name only, so a zoo of links to the shipped files works."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        return None
    path = Path(folder) / name
    return path if path.is_file() else None


def write_card(card: ModelCard, directory: Path) -> Path:
    path = Path(directory) / f"{card.name}.json"
    path.write_text(card.to_json())
    return path
