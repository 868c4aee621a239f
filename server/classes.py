"""Class probabilities from a saliency graph's logits, for the page and for ``explain``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_classes(logits: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """(class index, softmax probability) of the ``k`` highest logits, best first."""
    scores = np.asarray(logits, dtype=np.float64).reshape(-1)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    best = np.argsort(-probs)[:k]
    return [(int(i), float(probs[i])) for i in best]


class UnknownClass(ValueError):
    """A class given by index or name that the labels do not have; the message says why."""


def find_class(text: str | int, labels: Sequence[str]) -> int:
    """A class index (as a number or its digits) or a case-insensitive class name -> index.
    Shared by the page's fooling target, ``explain --target`` and ``lab`` commands."""
    shown = str(text).strip()
    if isinstance(text, int) or shown.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(labels):
            raise UnknownClass(f"class index {index} is out of range 0..{len(labels) - 1}")
        return index
    names = {name.lower(): i for i, name in enumerate(labels)}
    if shown.lower() not in names:
        close = [name for name in labels if shown.lower() and shown.lower() in name.lower()][:5]
        shown = shown if len(shown) <= 40 else f"{shown[:40]}..."
        raise UnknownClass(f"unknown class {shown!r}: give an index 0..{len(labels) - 1} or a name"
                           + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return names[shown.lower()]


def top5(logits: np.ndarray, labels: tuple[str, ...]) -> list[dict]:
    """The page's top-5 list; an index beyond the labels file shows as ``class N``."""
    return [{"label": labels[i] if i < len(labels) else f"class {i}", "p": round(p, 4)} for i, p in top_classes(logits)]
