"""The one place for value ranges, normalisation constants and image folders.

Style networks take and return RGB float images in [0, 1] (NCHW). The loss network and
the classifiers normalise from that range themselves, so nothing else converts ranges.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch

from stylecam.server import images
from stylecam.server.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

STYLE_VALUE_RANGE = (0.0, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOLDOUT_MODULUS = 20  # about 1 photo in 20 is kept out of training, for measuring quality


class ImageError(ValueError):
    """An image that cannot be read; the message names the file."""


def read_rgb(path: Path) -> np.ndarray:
    """uint8 HxWx3 RGB (``server.images.read_rgb``), or ImageError naming the file."""
    try:
        return images.read_rgb(path)
    except images.ImageFileError as e:
        raise ImageError(str(e)) from None


def write_png(path: Path, rgb: np.ndarray) -> None:
    """uint8 HxWx3 RGB to an image file (format by suffix), its folder made; ImageError if it cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise ImageError(f"{path}: cannot write")


def write_thumbnail(painting: Path, path: Path, side: int = 160) -> None:
    """The painting scaled to ``side`` on its long side, as a JPEG written whole or not at all:
    the page shows it on the style's chip."""
    rgb = read_rgb(painting)
    scale = side / max(rgb.shape[:2])
    small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    staged = path.with_name(f".{path.name}.tmp.jpg")
    if not cv2.imwrite(str(staged), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]):
        raise ImageError(f"{path}: cannot write")
    staged.replace(path)


def centre_square(rgb: np.ndarray, side: int) -> np.ndarray:
    """The largest centred square, scaled to side x side."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return cv2.resize(rgb[top:top + s, left:left + s], (side, side), interpolation=cv2.INTER_AREA)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float 1x3xHxW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """float 1x3xHxW (or 3xHxW) in [0, 1] -> uint8 HxWx3, rounded."""
    if image.dim() == 4:
        image = image[0]
    return image.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def imagenet_normalize(image: torch.Tensor) -> torch.Tensor:
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def find_images(root: Path) -> list[Path]:
    """Image files under root, recursively, sorted for reproducibility."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def is_held_out(path: Path) -> bool:
    """The fixed held-out split: decided by the file name alone, so training and the quality
    benchmark agree on any machine and for any folder."""
    return zlib.crc32(Path(path).name.encode()) % HOLDOUT_MODULUS == 0


T = TypeVar("T")


def spread(items: list[T], count: int) -> list[T]:
    """``count`` of ``items`` (all of them when there are fewer), evenly spaced from the
    first to the last, each once: a fixed, representative pick from a sorted folder."""
    index = np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int)
    return [items[i] for i in index]


def photos_under(roots: Sequence[Path]) -> list[Path]:
    """The photos under ``roots`` (recursive, each folder's sorted); ImageError when there are none."""
    paths = [p for root in roots for p in find_images(root)]
    if not paths:
        raise ImageError(f"no photos under {', '.join(map(str, roots))}")
    return paths


def split_photos(roots: list[Path], held_out: bool) -> list[Path]:
    """The photos under ``roots`` of one split (held out, or training), each folder's sorted;
    ImageError naming the split when there are none."""
    paths = [p for root in roots for p in find_images(root) if is_held_out(p) == held_out]
    if not paths:
        raise ImageError(f"no {'held-out' if held_out else 'training'} photos under {', '.join(map(str, roots))}")
    return paths


def load_style_image(path: Path, size: int | None) -> torch.Tensor:
    """1x3xHxW in [0, 1], the long side resized to ``size`` (None keeps it)."""
    rgb = read_rgb(path)
    if size:
        h, w = rgb.shape[:2]
        scale = size / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return to_tensor(rgb)


class ContentImages:
    """Random square crops of every readable image under the given folders (less the
    held-out split unless ``holdout`` is False).

    Unreadable files are skipped with one warning each, so one bad file never stops
    a long training run.
    """

    def __init__(self, roots: list[Path], size: int, holdout: bool = True) -> None:
        self.size = size
        paths = [p for root in roots for p in find_images(root) if not (holdout and is_held_out(p))]
        self.images: list[np.ndarray] = []
        for path in paths:
            try:
                self.images.append(self._fit(read_rgb(path)))
            except ImageError as e:
                log.warning("skipping %s", e)
        if not self.images:
            raise ImageError(f"no readable images under {', '.join(map(str, roots))}")

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        """Keep images small in memory: short side at most 1.5x the crop size."""
        h, w = rgb.shape[:2]
        scale = 1.5 * self.size / min(h, w)
        if scale < 1:
            rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        return rgb

    def __len__(self) -> int:
        return len(self.images)

    def crop(self, index: int, rng: random.Random) -> torch.Tensor:
        """A random scale, crop and flip of image ``index``: 3xSxS in [0, 1]."""
        rgb = self.images[index]
        h, w = rgb.shape[:2]
        side = rng.uniform(0.6, 1.0) * min(h, w)
        side = max(self.size // 2, int(side))
        side = min(side, h, w)
        y, x = rng.randint(0, h - side), rng.randint(0, w - side)
        patch = cv2.resize(rgb[y : y + side, x : x + side], (self.size, self.size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return to_tensor(patch)[0]


def batch_rng(seed: int, step: int) -> random.Random:
    """The generator of batch ``step``: a function of (seed, step) alone, which is what makes
    ``--resume`` exact."""
    return random.Random(seed * 7_919 + step)


def content_batch(dataset: ContentImages, step: int, batch_size: int, seed: int) -> torch.Tensor:
    """Batch ``step`` of a reproducible stream: the same (seed, step) always gives the same batch.

    Deriving each batch from (seed, step) alone is what makes ``--resume`` exact.
    """
    rng = batch_rng(seed, step)
    indices = [rng.randrange(len(dataset)) for _ in range(batch_size)]
    return torch.stack([dataset.crop(i, rng) for i in indices])
