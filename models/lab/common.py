"""What every ``stylecam lab`` command shares: its options, the pixel-space optimisation
loop with a progress bar, and writing images."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stylecam.models.builders import UnknownModel, WeightsUnavailable
from stylecam.models.classifier import imagenet_labels
from stylecam.models.data import ImageError, find_images, load_style_image, to_uint8, write_png
from stylecam.models.factory import create_model
from stylecam.models.vgg import SOURCES
from stylecam.server.classes import UnknownClass, find_class

USER_ERRORS = (ImageError, WeightsUnavailable, UnknownModel)

Losses = dict[str, torch.Tensor]  # named terms; "total" is the one minimised


def parser(prog: str, description: str, size: int, steps: int, size_help: str = "") -> argparse.ArgumentParser:
    """The options every lab command takes, so a quick run (small --size, few --steps) is
    always possible. With ``size_help``, --size is text the command reads itself."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--out", type=Path, default=Path("lab-out"), help="folder for the images written (default: lab-out)")
    if size_help:
        p.add_argument("--size", default=str(size), help=f"{size_help} (default: {size})")
    else:
        p.add_argument("--size", type=int, default=size, help=f"long side of the images worked on, pixels (default: {size})")
    p.add_argument("--steps", type=int, default=steps, help=f"optimisation steps (default: {steps})")
    p.add_argument("--seed", type=int, default=0, help="seed of noise and jitter (default: 0)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    return p


def add_vgg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vgg", default="auto", help=f"VGG-16 weights: {', '.join(SOURCES)} or a file (default: auto, as training)")


def start(args: argparse.Namespace) -> None:
    """Check the shared options and seed everything."""
    if args.size < 16:
        raise ImageError(f"--size {args.size} is too small: at least 16 pixels")
    if args.steps < 1:
        raise ImageError(f"--steps {args.steps}: at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def optimise(image: torch.Tensor, losses: Callable[[torch.Tensor], Losses], steps: int, lr: float, desc: str,
             after_step: Callable[[torch.Tensor, int], None] | None = None) -> list[dict[str, float]]:
    """Adam on the pixels of ``image`` (changed in place, kept in [0, 1]); returns every
    step's loss terms. ``after_step(image, step)`` may edit the pixels (jitter, blur)."""
    image.requires_grad_(True)
    optimiser = torch.optim.Adam([image], lr=lr)
    history = []
    bar = tqdm(range(steps), desc=desc, unit="step", dynamic_ncols=True)
    for step in bar:
        optimiser.zero_grad(set_to_none=True)
        terms = losses(image)
        terms["total"].backward()
        optimiser.step()
        with torch.no_grad():
            image.clamp_(0.0, 1.0)
            if after_step is not None:
                after_step(image, step)
        history.append({k: v.item() for k, v in terms.items()})
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix({k: f"{v:.3g}" for k, v in history[-1].items()}, refresh=False)
    image.requires_grad_(False)
    return history


def write(image: torch.Tensor | np.ndarray, path: Path) -> Path:
    """Write an RGB image (1x3xHxW float in [0, 1], or uint8 HxWx3) and say so."""
    write_png(path, to_uint8(image) if isinstance(image, torch.Tensor) else image)
    print(f"wrote {path}")
    return path


def report(name: str, history: list[dict[str, float]], terms: tuple[str, ...]) -> None:
    """One line: each loss term's first and last value, and how far it fell."""
    first, last = history[0], history[-1]

    def change(a: float, b: float) -> str:
        return f"{a / b:.1f}x lower" if 0 < b < a else "rose: it starts at its best when the run starts from the photo" if a == 0 else "did not fall"

    parts = [f"{t} {first[t]:.4g} -> {last[t]:.4g} ({change(first[t], last[t])})" for t in terms]
    print(f"{name}: {len(history)} steps; " + "; ".join(parts))


def class_index(text: str) -> int:
    """An ImageNet class index, or a class name (case-insensitive) -> its index."""
    try:
        return find_class(text, imagenet_labels())
    except UnknownClass as e:
        raise ImageError(str(e)) from None


def photos(folder: Path) -> list[Path]:
    """The images under ``folder`` (sorted, recursive); ImageError when there are none."""
    found = find_images(folder) if folder.is_dir() else []
    if not found:
        raise ImageError(f"{folder}: no images there" if folder.is_dir() else f"{folder}: not a folder")
    return found


def embed(paths: list[Path], size: int) -> np.ndarray:
    """The saliency classifier's penultimate features (global average of its last conv
    block), one L2-normalised row per image, with a progress bar."""
    model = create_model("efficientnet_lite0").eval()
    rows = []
    with torch.inference_mode():
        for path in tqdm(paths, desc="features", unit="image", dynamic_ncols=True):
            rows.append(model.features(load_style_image(path, size)).mean(dim=(2, 3))[0])
    features = torch.stack(rows)
    return torch.nn.functional.normalize(features, dim=1).numpy()
