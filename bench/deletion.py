"""``stylecam bench deletion``: how faithful each saliency method is (Petsiuk et al. 2018).

Deletion metric: black out the pixels in order of saliency, most salient first, and
follow the classifier's probability of its original top-1 class. A faithful map makes it
fall fast, so a lower area under the curve (AUC) is better; a random map is the baseline.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur
from tqdm import tqdm

from stylecam.bench.report import add_output_flags, publish
from stylecam.export.saliency import DEFAULT_CLASSIFIER, preprocess
from stylecam.export.saliency_methods import METHODS, create_method
from stylecam.models.builders import UnknownModel, WeightsUnavailable
from stylecam.models.classifier import ImageClassifier
from stylecam.models.data import ImageError, photos_under, read_rgb, spread
from stylecam.models.factory import create_model

USER_ERRORS = (ImageError, UnknownModel, WeightsUnavailable)
RANDOM = "random"


FILLS = ("blur", "black")


def deletion_auc(model: ImageClassifier, image: torch.Tensor, saliency: torch.Tensor, target: int, steps: int,
                 patch: int, fill: str) -> float:
    """image (1, 3, H, W) in [0, 1], saliency (H, W) -> AUC in [0, 1] of p(target) while
    deleting 0, 1/steps, ..., all of the image, one batch, trapezoid rule.

    Pixels go in ``patch`` x ``patch`` squares ranked by mean saliency, and are replaced by a
    blurred copy of the image (or black): single scattered black pixels are an artefact the
    classifier reacts to strongly, which would make any speckled map look faithful.
    """
    height, width = saliency.shape
    scores = F.avg_pool2d(saliency[None, None], patch, ceil_mode=True)[0, 0]
    rank = torch.empty(scores.numel(), dtype=torch.long)
    rank[torch.argsort(scores.reshape(-1), descending=True)] = torch.arange(scores.numel())
    rank = rank.view(scores.shape).repeat_interleave(patch, 0).repeat_interleave(patch, 1)[:height, :width]
    counts = torch.tensor([round(k * scores.numel() / steps) for k in range(steps + 1)])
    deleted = (rank[None] < counts[:, None, None]).unsqueeze(1).float()  # (steps + 1, 1, H, W)
    background = gaussian_blur(image, [31, 31], [10.0, 10.0]) if fill == "blur" else torch.zeros_like(image)
    batch = image * (1 - deleted) + background * deleted
    with torch.inference_mode():
        probs = model(batch).softmax(1)[:, target].numpy()
    return float(np.trapezoid(probs, dx=1.0 / steps))


@dataclass(frozen=True)
class Result:
    image: str
    label: int
    auc: dict[str, float]  # method (and "random") -> deletion AUC


def run(paths: list[Path], classifier: str, methods: tuple[str, ...], steps: int, seed: int,
        patch: int = 8, fill: str = "blur") -> list[Result]:
    model = create_model(classifier)
    attributions = {name: create_method(name, model) for name in methods}
    size = model.pretrained_cfg.input_size
    generator = torch.Generator().manual_seed(seed)
    results = []
    for path in tqdm(paths, desc="deletion", unit="photo", dynamic_ncols=True):
        image = preprocess(torch.from_numpy(read_rgb(path)), size)
        with torch.inference_mode():
            label = int(model(image).argmax(1))
        maps = {name: method.attribute(image, label).detach() for name, method in attributions.items()}
        maps[RANDOM] = torch.rand(size, generator=generator)
        auc = {name: deletion_auc(model, image, m, label, steps, patch, fill) for name, m in maps.items()}
        results.append(Result(str(path), label, auc))
    return results


def summary(results: list[Result]) -> dict[str, dict[str, float]]:
    """method -> mean and median AUC, and the fraction of images where it beats random."""
    names = list(results[0].auc)
    table = {}
    for name in names:
        values = np.array([r.auc[name] for r in results])
        random = np.array([r.auc[RANDOM] for r in results])
        table[name] = {"mean_auc": float(values.mean()), "median_auc": float(np.median(values)),
                       "beats_random": float((values < random).mean())}
    return table


def pick(roots: list[Path], count: int) -> list[Path]:
    """``count`` images spread evenly over the sorted images under ``roots``."""
    return spread(photos_under(roots), count)


def main(argv: list[str], prog: str = "stylecam bench deletion") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, metavar="DIR", help="folders of photos (searched recursively)")
    parser.add_argument("--count", type=int, default=50, help="photos to use, spread over the folders (default: 50)")
    parser.add_argument("--classifier", default=DEFAULT_CLASSIFIER, help=f"registered classifier (default: {DEFAULT_CLASSIFIER})")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated (default: {','.join(METHODS)})")
    parser.add_argument("--steps", type=int, default=16, help="deletion steps from 0 to all pixels (default: 16)")
    parser.add_argument("--patch", type=int, default=8, help="side of the squares deleted together, pixels (default: 8)")
    parser.add_argument("--fill", choices=FILLS, default="blur", help="what replaces deleted pixels (default: blur)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline maps (default: 0)")
    add_output_flags(parser, "deletion")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = tuple(m for m in args.methods.split(",") if m)
    start = time.perf_counter()
    results = run(pick(args.images, args.count), args.classifier, methods, args.steps, args.seed, args.patch, args.fill)
    table = summary(results)
    lines = [f"deletion AUC (lower is better), {len(results)} photos, {args.classifier}, {args.steps} steps, "
             f"{args.patch}px squares, {args.fill} fill",
             "| method | mean | median | beats random |",
             "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {row['mean_auc']:.3f} | {row['median_auc']:.3f} | {'-' if name == RANDOM else format(row['beats_random'], '.0%')} |"
              for name, row in table.items()]
    publish(args, prog, argv, lines, {"classifier": args.classifier, "steps": args.steps, "seed": args.seed,
                                      "patch": args.patch, "fill": args.fill,
                                      "seconds": time.perf_counter() - start, "summary": table,
                                      "images": [vars(r) for r in results]})
    return 0
