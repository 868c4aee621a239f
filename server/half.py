"""Half-precision style graphs made where they run, so the repository ships only fp32 and int8.

On the first CUDA load of a float32 style graph, the registry asks for its fp16 twin:
onnxruntime's float16 converter rewrites the graph (inputs and outputs keep their types),
the result is held to the float32 graph on the same device by the export's parity rule
(at most 1 level on the 0-255 scale at 128x96 and 83x61, every style), and only then
cached under ``$XDG_CACHE_HOME/stylecam/fp16`` (else ``~/.cache``), named by the float32
graph's SHA-256, for every later start. A graph that fails the rule is served in fp32,
with one warning.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from stylecam.server.model_card import FRAME, PARITY_LEVELS, PARITY_SIZES, STYLE, STYLIZED, CardError, ModelCard, card_path_for, load_card_for_onnx, sha256_of
from stylecam.server.ort_model import OrtModel

log = logging.getLogger(__name__)



def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stylecam" / "fp16"


def convert(source: Path, target: Path) -> None:
    """fp32 ``source`` -> fp16 ``target``; frame, style and output keep their types."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(target))


def worst_difference(card: ModelCard, reference: OrtModel, candidate: OrtModel) -> int:
    """The largest |candidate - reference| in levels over random frames at PARITY_SIZES and every style."""
    table = card.vector_table() if card.input(STYLE) is not None else [None]
    rng = np.random.default_rng(0)
    worst = 0
    for h, w in PARITY_SIZES:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for vector in table:
            feeds = {FRAME: frame} if vector is None else {FRAME: frame, STYLE: vector}
            got, wanted = candidate.run(**feeds)[STYLIZED], reference.run(**feeds)[STYLIZED]
            worst = max(worst, int(np.abs(got.astype(np.int16) - wanted.astype(np.int16)).max()))
    return worst


def half_of(card: ModelCard, onnx: Path, device: str, threads: int = 0) -> tuple[ModelCard, Path]:
    """The fp16 twin of the float32 graph ``onnx`` (``card``), from the cache or made and checked
    now on ``device``; ``card`` and ``onnx`` themselves, with one warning, when the twin cannot
    be made or breaks the parity rule."""
    cached = cache_dir() / f"{card.sha256}.onnx"
    try:
        return load_card_for_onnx(cached), cached
    except CardError:  # not made yet, or damaged: made again
        pass
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent, prefix=".half-") as tmp:
        staged = Path(tmp) / cached.name
        try:
            convert(onnx, staged)
        except ImportError as e:
            log.warning("%s stays fp32: converting it to fp16 needs the onnx package (%s)", card.name, e)
            return card, onnx
        twin = dataclasses.replace(card, precision="fp16", onnx=cached.name, sha256=sha256_of(staged),
                                   source={**card.source, "fp16_of": card.sha256})
        card_path_for(staged).write_text(twin.to_json())
        worst = worst_difference(card, OrtModel.load(onnx, device, threads), OrtModel.load(staged, device, threads))
        if worst > PARITY_LEVELS:
            log.warning("%s stays fp32: its fp16 conversion differs by %d levels on %s (at most %d allowed)",
                        card.name, worst, device, PARITY_LEVELS)
            return card, onnx
        os.replace(card_path_for(staged), card_path_for(cached))
        os.replace(staged, cached)
    log.info("made an fp16 graph of %s on %s (max |fp16 - fp32| = %d level(s)), cached as %s", card.name, device, worst, cached)
    return twin, cached
