"""Torch-free image files: RGB in, RGB out, never a half-written file."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class ImageFileError(ValueError):
    """An image that cannot be read or written; the message names the file."""


def read_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if Path(path).is_file() else None
    if bgr is None:
        raise ImageFileError(f"{path}: not a readable image" if Path(path).exists() else f"{path}: no such file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def scale_to_long_side(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """Resized so its longer side is ``long_side`` pixels (sides at least 16, what the
    exported graphs accept): area averaging to shrink, bilinear to grow."""
    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def staging_path(path: Path) -> Path:
    """Where a file is written before it is complete and renamed to ``path``."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    """Write to a staging name, then rename: an error leaves no file behind."""
    staged = staging_path(path)
    if not cv2.imwrite(str(staged), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        staged.unlink(missing_ok=True)
        raise ImageFileError(f"{path}: cannot write an image with this suffix; use .png or .jpg")
    os.replace(staged, path)
