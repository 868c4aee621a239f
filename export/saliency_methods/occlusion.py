"""``occlusion``: the class probability lost under a sliding grey patch (Zeiler & Fergus 2014)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylecam.export.saliency_methods.base import Attribution, register_method, resolve
from stylecam.models.classifier import ImageClassifier


@register_method
class Occlusion(Attribution):
    """Zeiler & Fergus 2014: the drop of the explained class's softmax probability when a grey
    patch hides one of ``grid`` x ``grid`` positions, bilinearly upsampled to the input size.

    Forward only: the clean image and every occluded copy run as one batch. ``patch`` is the
    square's side in pixels; the positions are spread evenly from edge to edge, so with the
    defaults (7 positions of 56 px at 224 px) neighbouring patches overlap by half. The masks
    are built from one row profile per position (7 x 224 numbers), not stored as a stack of
    images, which would add megabytes of constants to the graph. No backward pass at all
    (differences of probabilities): ``exact``, its map must agree at every pixel.
    """

    name, position, exact = "occlusion", 5, True
    summary = "the class probability lost when a grey patch hides each of 7x7 places (Zeiler & Fergus 2014)"

    def __init__(self, model: ImageClassifier, grid: int = 7, patch: int = 56, fill: float = 0.5) -> None:
        super().__init__(model)
        height, width = model.pretrained_cfg.input_size
        self.grid, self.fill = grid, fill
        self.options = {"grid": [grid, grid], "patch": patch, "fill": fill, "input_size": [height, width]}
        self.rows, self.columns = (self._profiles(side, grid, patch) for side in (height, width))

    @staticmethod
    def _profiles(side: int, grid: int, patch: int) -> torch.Tensor:
        """(grid, side) float32: 1 where the patch at each position covers the pixel."""
        starts = torch.linspace(0, side - patch, grid).round().long()
        pixels = torch.arange(side)
        return ((pixels >= starts[:, None]) & (pixels < starts[:, None] + patch)).float()

    def explain(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, columns = self.rows.to(image), self.columns.to(image)
        masks = (rows[:, None, :, None] * columns[None, :, None, :]).reshape(-1, 1, *image.shape[-2:])
        batch = torch.cat([image, image * (1 - masks) + self.fill * masks])
        with torch.no_grad():
            logits = self.model(batch)
        chosen, one_hot = resolve(logits, target)
        probability = logits.softmax(1) @ one_hot
        drop = (probability[0] - probability[1:]).clamp(min=0.0).reshape(1, 1, self.grid, self.grid)
        heat = F.interpolate(drop, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return logits[0], heat[0, 0], chosen
