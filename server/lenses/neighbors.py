"""``neighbors``: the gallery photos nearest the frame in the classifier's feature space."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from stylecam.server.compose import LensView
from stylecam.server.images import read_rgb
from stylecam.server.lenses.base import PICTURE_HEIGHT, LensRunner, ServedLens, gap, photo_at_height, register_lens
from stylecam.server.model_card import FRAME, NEIGHBORS, SIMILARITY


def gallery_tiles(runner: LensRunner, indices: Sequence[int]) -> list[np.ndarray]:
    """The thumbnails at ``indices``, cut from the gallery picture beside the lens's card."""
    options = runner.options
    sheet = read_rgb(runner.model.path.parent / str(options["gallery"]))
    tile, columns = int(options["tile"]), int(options["columns"])
    return [sheet[(i // columns) * tile: (i // columns + 1) * tile, (i % columns) * tile: (i % columns + 1) * tile] for i in indices]


@register_lens
class Neighbors(ServedLens):
    name, label, position = "neighbors", "Nearest photos", 2

    def view(self, runner: LensRunner, frame: np.ndarray, layer: int | None, channel: int, target: int | None) -> LensView:
        out = runner.model.run(**{FRAME: frame})
        photos = list(runner.options.get("photos", ()))
        found = [
            {"index": int(i), "similarity": round(float(s), 4), "photo": photos[int(i)] if int(i) < len(photos) else str(int(i))}
            for i, s in zip(np.asarray(out[NEIGHBORS]).reshape(-1), np.asarray(out[SIMILARITY]).reshape(-1))
        ]
        return LensView(self.name, info={"neighbors": found})

    def picture(self, runner: LensRunner, view: LensView, rgb: np.ndarray, opacity: float) -> np.ndarray:
        """The photo beside its nearest photos, in two rows of three."""
        tiles = gallery_tiles(runner, [n["index"] for n in view.info["neighbors"]])
        side = PICTURE_HEIGHT // 2
        shown = [cv2.resize(t, (side, side), interpolation=cv2.INTER_AREA) for t in tiles]
        rows = [np.hstack(shown[:3]), np.hstack(shown[3:] + [np.full_like(shown[0], 255)] * (3 - len(shown[3:])))]
        return np.hstack([photo_at_height(rgb), gap(), np.vstack(rows)])
