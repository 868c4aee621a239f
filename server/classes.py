"""Class probabilities from a saliency graph's logits, for the page and for ``explain``."""

from __future__ import annotations

import numpy as np


def top_classes(logits: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """(class index, softmax probability) of the ``k`` highest logits, best first."""
    scores = np.asarray(logits, dtype=np.float64).reshape(-1)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    best = np.argsort(-probs)[:k]
    return [(int(i), float(probs[i])) for i in best]
