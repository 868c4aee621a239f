"""Finds model cards under a directory; opens each model's session once, on first use.

Only cards and ``.onnx`` files are read: the server knows nothing else about a model.
A card that cannot be used is skipped with one warning naming the file and the fix, so
one bad export never stops the server. When a name has both an fp16 and an fp32 export,
CUDA gets the fp16 one and the CPU the fp32 one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from server.control import Catalog
from server.model_card import CardError, ModelCard, load_card
from server.ort_model import OrtModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    card: ModelCard
    onnx: Path
    labels: tuple[str, ...] = ()


def _labels(card_path: Path, card: ModelCard) -> tuple[str, ...]:
    if not card.labels:
        return ()
    path = card_path.parent / card.labels
    try:
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError as e:
        log.warning("%s: labels file %s unreadable (%s); top-5 will show class ids", card_path, path, e.strerror)
        return ()


def scan(directory: Path, device: str) -> dict[str, Entry]:
    """Usable cards under ``directory`` (recursively), by model name."""
    directory = Path(directory)
    if not directory.is_dir():
        log.warning("models directory %s does not exist; serving without models (frames pass through)", directory)
        return {}
    prefer = "fp16" if device == "cuda" else "fp32"
    found: dict[str, Entry] = {}
    for card_path in sorted(directory.rglob("*.json")):
        try:
            card = load_card(card_path)
        except CardError as e:
            log.debug("skipping %s: %s", card_path, e)  # other JSON (e.g. configs) may live here too
            continue
        onnx_path = card_path.parent / card.onnx
        if not onnx_path.is_file():
            log.warning("skipping card %s: its model %s is missing; re-export it", card_path, onnx_path)
            continue
        entry = Entry(card, onnx_path, _labels(card_path, card))
        held = found.get(card.name)
        if held is None or (held.card.precision != prefer and card.precision == prefer):
            found[card.name] = entry
    return found


class Registry:
    """The models on offer; ``model(name)`` opens a session the first time (thread-safe)."""

    def __init__(self, entries: dict[str, Entry], device: str, threads: dict[str, int]) -> None:
        self.entries = entries
        self.device = device
        self._threads = threads  # intra-op threads per kind
        self._models: dict[str, OrtModel] = {}
        self._lock = threading.Lock()

    def catalog(self) -> Catalog:
        cards = [e.card for e in self.entries.values()]
        return Catalog(
            styles=tuple(c.name for c in cards if c.kind == "style"),
            multistyles={c.name: tuple(c.styles) for c in cards if c.kind == "multistyle"},
            saliency=tuple(dict.fromkeys(c.method for c in cards if c.kind == "saliency" and c.method)),
        )

    def saliency_for(self, method: str) -> str | None:
        return next((n for n, e in self.entries.items() if e.card.kind == "saliency" and e.card.method == method), None)

    def describe(self) -> list[dict]:
        """What GET /api/models shows, from the cards alone."""
        return [
            {
                "name": e.card.name,
                "kind": e.card.kind,
                "styles": list(e.card.styles),
                "method": e.card.method,
                "precision": e.card.precision,
                "loaded": e.card.name in self._models,
            }
            for e in self.entries.values()
        ]

    def model(self, name: str) -> OrtModel:
        """The shared session for ``name``; raises KeyError (unknown) or CardError (unusable)."""
        model = self._models.get(name)
        if model is not None:
            return model
        with self._lock:
            model = self._models.get(name)
            if model is None:
                entry = self.entries[name]
                threads = self._threads.get(entry.card.kind, 0)
                model = OrtModel.load(entry.onnx, device=self.device, threads=threads, spin=False)
                log.info("loaded %s (%s, %s) on %s with %d intra-op threads", name, entry.card.kind, entry.card.precision, model.provider, threads)
                self._models[name] = model
        return model
