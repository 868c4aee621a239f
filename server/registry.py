"""Finds model cards under a directory; opens each model's session once, on first use.

Only cards and ``.onnx`` files are read: the server knows nothing else about a model.
A card that cannot be used is skipped with one warning naming the file and the fix, so
one bad export never stops the server. When a model has several verified precisions,
each device gets its fastest (``FASTEST``): CUDA the fp16 graph, the CPU the int8 one.
A float32 style graph with no fp16 card is converted on its first CUDA load (``half``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stylecam.server import half
from stylecam.server.control import Catalog
from stylecam.server.model_card import CardError, ModelCard, beside, iter_cards, read_labels
from stylecam.server.ort_model import OrtModel
from stylecam.server.runner import LensRunner, SaliencyRunner, StyleRunner
from stylecam.server.style_kinds import STYLE_KINDS, blends
from stylecam.server.user_styles import LearntStyle, styles_for

Runner = StyleRunner | SaliencyRunner | LensRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    card: ModelCard
    onnx: Path
    labels: tuple[str, ...] = ()
    half: bool = False  # a float32 style graph to serve as its fp16 twin, made at its first load (``half.half_of``)


def _labels(card_path: Path, card: ModelCard) -> tuple[str, ...]:
    if not card.labels:
        return ()
    try:
        return read_labels(card_path, card)
    except CardError as e:
        log.warning("%s; top-5 will show class ids", e)
        return ()


def same_model(card: ModelCard) -> tuple:
    """Cards that are one model in different precisions share this key: the checkpoint
    they were exported from (style), or method + classifier (saliency)."""
    if card.kind in ("saliency", "lens") and card.method:
        return (card.kind, card.method, card.classifier)
    checkpoint = card.source.get("checkpoint_sha256") if isinstance(card.source, dict) else None
    return (card.kind, checkpoint) if checkpoint else (card.kind, card.name)


PRECISIONS = ("auto", "fp32", "fp16", "int8")
# the fastest verified variant first: an int8 or fp16 card exists only when its export
# passed its check against the float32 network
FASTEST = {"cuda": ("fp16", "fp32", "int8"), "cpu": ("int8", "fp32", "fp16")}


def pick(entries: list[Entry], device: str, precision: str = "auto") -> Entry:
    """The variant of one model to run: ``precision``'s when there is one, else the fastest for ``device``."""
    order = FASTEST[device] if precision == "auto" else (precision, "fp32", *FASTEST[device])
    return next((e for p in order for e in entries if e.card.precision == p), entries[0])


def scan(directory: Path, device: str, precision: str = "auto") -> dict[str, Entry]:
    """Usable cards under ``directory`` (recursively), by the name the page shows: one
    entry per model, in the variant ``pick`` chooses, named after its fp32 card when
    there is one."""
    directory = Path(directory)
    if not directory.is_dir():
        log.warning("models directory %s does not exist; serving without models (frames pass through)", directory)
        return {}
    groups: dict[tuple, list[Entry]] = {}
    for card_path, card in iter_cards(directory):
        onnx_path = card_path.parent / card.onnx
        if not onnx_path.is_file():
            log.warning("skipping card %s: its model %s is missing; re-export it", card_path, onnx_path)
            continue
        groups.setdefault(same_model(card), []).append(Entry(card, onnx_path, _labels(card_path, card)))
    found: dict[str, Entry] = {}
    for entries in groups.values():
        chosen = pick(entries, device, precision)
        if device == "cuda" and precision in ("auto", "fp16") and chosen.card.precision == "fp32" and chosen.card.kind in STYLE_KINDS:
            chosen = dataclasses.replace(chosen, half=True)
        name = next((e.card.name for e in entries if e.card.precision == "fp32"), chosen.card.name)
        if name in found:
            log.warning("two models are named %r (%s, %s); serving the first", name, found[name].onnx, chosen.onnx)
            continue
        found[name] = chosen
    return found


class Registry:
    """The models on offer; ``model(name)`` opens a session the first time (thread-safe)."""

    def __init__(self, entries: dict[str, Entry], device: str, threads: dict[str, int],
                 learnt: Sequence[LearntStyle] = ()) -> None:
        """``learnt``: styles from ``stylecam learn``; each multistyle model offers those that fit it."""
        self.entries = entries
        self.device = device
        self.learnt = list(learnt)
        self._threads = threads  # intra-op threads per kind
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()

    def catalog(self) -> Catalog:
        cards = [(name, e.card) for name, e in self.entries.items()]
        return Catalog(
            styles=tuple(n for n, c in cards if c.kind in STYLE_KINDS and not blends(c.kind)),
            multistyles={n: self.styles_of(n) for n, c in cards if blends(c.kind)},
            saliency=tuple(dict.fromkeys(c.method for _, c in cards if c.kind == "saliency" and c.method)),
            lenses={c.method: len(c.options.get("layers", ())) for _, c in cards if c.kind == "lens" and c.method},
            classes=self.classes(),
        )

    def set_learnt(self, learnt: Sequence[LearntStyle]) -> None:
        """Replace the learnt styles (one learnt, deleted, or forming): open runners, the
        catalog and /api/models follow at once."""
        self.learnt = list(learnt)
        for name, runner in list(self._runners.items()):
            if isinstance(runner, StyleRunner):
                runner.set_learnt(styles_for(self.entries[name].card, self.learnt))

    def styles_of(self, name: str) -> tuple[str, ...]:
        """A model's style names: its card's, then (a multistyle one's) the learnt ones that fit it."""
        card = self.entries[name].card
        return card.styles + tuple(s.name for s in styles_for(card, self.learnt))

    def classes(self) -> tuple[str, ...]:
        """The class names of the classifier the lenses (else the saliency graphs) explain."""
        for kind in ("lens", "saliency"):
            labels = next((e.labels for e in self.entries.values() if e.card.kind == kind and e.labels), None)
            if labels:
                return labels
        return ()

    def saliency_for(self, method: str) -> str | None:
        return self._named("saliency", method)

    def lens_for(self, method: str) -> str | None:
        return self._named("lens", method)

    def _named(self, kind: str, method: str) -> str | None:
        return next((n for n, e in self.entries.items() if e.card.kind == kind and e.card.method == method), None)

    def painting(self, style: str) -> Path | None:
        """The thumbnail of a shipped style's painting, beside the card that names it."""
        for e in self.entries.values():
            found = beside(e.onnx.parent, e.card.paintings.get(style, {}).get("thumbnail"))
            if found is not None:
                return found
        return None

    def paintings(self, name: str) -> dict[str, dict]:
        """Each style of a model by its painting, for the page's picker: title, and where its
        thumbnail is (None when the card has none)."""
        card = self.entries[name].card
        shown = {style: {"title": info.get("title") or style,
                         "thumbnail": f"/api/styles/{style}/thumbnail" if info.get("thumbnail") else None}
                 for style, info in card.paintings.items()}
        for learnt in styles_for(card, self.learnt):
            shown[learnt.name] = {"title": learnt.title or learnt.name, "thumbnail": f"/api/styles/{learnt.name}/thumbnail"}
        return shown

    def describe(self) -> list[dict]:
        """What GET /api/models shows, from the cards alone."""
        return [
            {
                "name": name,
                "kind": e.card.kind,
                "styles": list(self.styles_of(name)),
                "paintings": self.paintings(name),
                "learnt": [s.name for s in styles_for(e.card, self.learnt)],
                "method": e.card.method,
                "precision": e.card.precision,
                "loaded": name in self._runners,
                **({"options": e.card.options} if e.card.kind == "lens" else {}),
                **(STYLE_KINDS[e.card.kind].descriptor() if e.card.kind in STYLE_KINDS else {}),
            }
            for name, e in self.entries.items()
        ]

    def model(self, name: str) -> OrtModel:
        """The shared session for ``name``; raises like ``runner``."""
        return self.runner(name).model

    def runner(self, name: str) -> Runner:
        """The shared runner (and its session) for ``name``, opened on first use; raises
        KeyError (unknown) or CardError (unusable)."""
        runner = self._runners.get(name)
        if runner is not None:
            return runner
        with self._lock:
            runner = self._runners.get(name)
            if runner is None:
                entry = self.entries[name]
                threads = self._threads.get(entry.card.kind, 0)
                if entry.half:
                    card, onnx = half.half_of(entry.card, entry.onnx, self.device, threads)
                    entry = self.entries[name] = dataclasses.replace(entry, card=card, onnx=onnx, half=False)
                model = OrtModel.load(entry.onnx, device=self.device, threads=threads, spin=False)
                log.info("loaded %s (%s, %s) on %s with %d intra-op threads", name, entry.card.kind, entry.card.precision, model.provider, threads)
                if self.device == "cuda" and model.provider != "CUDAExecutionProvider":
                    log.warning("%s runs on %s, not CUDA: onnxruntime could not start its CUDA provider (see its log above)", name, model.provider)
                kind = entry.card.kind
                runner = (SaliencyRunner(model, entry.labels) if kind == "saliency"
                          else LensRunner(model, entry.labels) if kind == "lens"
                          else StyleRunner(model, styles_for(entry.card, self.learnt)))
                self._runners[name] = runner
        return runner
