"""Does a style network paint? Three measures of one output against its photo and painting.

- detail: mean |Laplacian| of the output's luma over the photo's. Below 1 the network
  removed more fine texture than it added (it smears); above 1 it paints. Johnson et al.'s
  published outputs score about 1.2-2.2.
- palette distance: sliced Wasserstein distance between the output's and the painting's
  pixels in CIE Lab (OpenCV's 8-bit Lab, L scaled back to 0-100 and a, b to -128..127),
  over PROJECTIONS fixed random directions (seed SEED): the mean over directions of the
  mean absolute difference of the sorted projections, both sets resampled to SAMPLES
  quantiles. Lower is nearer the painting's colours and their proportions.
- structure kept: Pearson correlation of the Sobel gradient magnitudes of output and photo
  (luma). 1 keeps every edge where it was; a painting that keeps faces sits around 0.5-0.8.

Pure functions of uint8 RGB arrays (OpenCV and NumPy), so any output can be scored:
ours, the peer's, published pictures.
"""

from __future__ import annotations

import cv2
import numpy as np

PROJECTIONS = 64
SEED = 0
SAMPLES = 4096


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def detail(output: np.ndarray, photo: np.ndarray) -> float:
    """Mean |Laplacian| of the output's luma divided by the photo's (same size)."""
    def texture(rgb: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(_luma(rgb), cv2.CV_32F, ksize=1)).mean())

    return texture(output) / max(texture(photo), 1e-6)


def lab_pixels(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) float32 Lab: L in 0-100, a and b in -128..127."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    return lab * np.float32([100 / 255, 1, 1]) - np.float32([0, 128, 128])


def _directions() -> np.ndarray:
    d = np.random.default_rng(SEED).normal(size=(PROJECTIONS, 3))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


DIRECTIONS = _directions()
QUANTILES = (np.arange(SAMPLES, dtype=np.float64) + 0.5) / SAMPLES


def palette_quantiles(rgb: np.ndarray) -> np.ndarray:
    """(PROJECTIONS, SAMPLES): the sorted projections of an image's Lab pixels; compute a
    painting's once and compare many outputs against it."""
    projected = lab_pixels(rgb) @ DIRECTIONS.T
    return np.quantile(projected, QUANTILES, axis=0).T


def palette_distance(output: np.ndarray, painting: np.ndarray) -> float:
    """Sliced Wasserstein-1 distance in Lab between the output's pixels and the painting's
    (``painting`` an RGB image, or its ``palette_quantiles``)."""
    target = painting if painting.ndim == 2 else palette_quantiles(painting)
    return float(np.abs(palette_quantiles(output) - target).mean())


def structure_kept(output: np.ndarray, photo: np.ndarray) -> float:
    """Correlation of Sobel gradient magnitudes (luma) of output and photo (same size)."""
    def edges(rgb: np.ndarray) -> np.ndarray:
        y = _luma(rgb)
        return cv2.magnitude(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1)).ravel()

    a, b = edges(output), edges(photo)
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / max(np.sqrt((a @ a) * (b @ b)), 1e-12))
