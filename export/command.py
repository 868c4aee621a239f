"""``stylecam export style|saliency|lens``: verified ``NAME.onnx`` + ``NAME.json`` model cards.

``style CKPT`` exports a trained style network (``stylecam export CKPT``, the older form,
still works); ``saliency METHOD`` a classifier's saliency graph (``saliency_command``);
``lens LENS`` one of the classifier's lenses (``lens_command``). The flag forms
``--saliency METHOD`` and ``--neighbors DIR ...`` stand for ``saliency METHOD`` and
``lens neighbors --photos DIR ...``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from stylecam.export import lens_command, quantize, saliency_command
from stylecam.export.onnx import export_onnx, frame_dims
from stylecam.export.style import example_inputs, style_graph
from stylecam.export.style_kinds import kind_for
from stylecam.export.verify import VerificationError, max_error, verify
from stylecam.models.builders import UnknownModel, WeightsUnavailable
from stylecam.models.checkpoint import Checkpoint, CheckpointError
from stylecam.models.data import ImageError, write_thumbnail
from stylecam.server.help import HelpFormatter, UsageError
from stylecam.server.model_card import FRAME, PARITY_SIZES, STYLIZED, ModelCard, TensorSpec, sha256_of, write_card

# the saliency path (export.saliency_command) raises the last two
USER_ERRORS = (UsageError, CheckpointError, VerificationError, UnknownModel, WeightsUnavailable, ImageError)
# two verification sizes: one a multiple of 4, one not (odd H and W exercise the crop)
VERIFY_SIZES = PARITY_SIZES


@dataclass(frozen=True)
class Exported:
    onnx: Path
    card: ModelCard
    errors: dict[str, float]


def painting_title(style: str) -> str:
    """A title from a style's name when none is given: ``composition_vii`` -> ``Composition vii``."""
    return style.replace("_", " ").capitalize()


def write_paintings(ckpt: Checkpoint, out_dir: Path, titles: dict[str, str]) -> dict[str, dict[str, str]]:
    """The card's ``paintings``: each style's title, and a thumbnail of its painting written
    beside the card (``painting_STYLE.jpg``) when the painting the network trained on is here."""
    found = list(ckpt.config.get("styles") or ())
    paintings = {}
    for i, style in enumerate(ckpt.styles):
        paintings[style] = {"title": titles.get(style) or painting_title(style)}
        if i < len(found) and Path(found[i]).is_file():
            write_thumbnail(Path(found[i]), out_dir / f"painting_{style}.jpg")
            paintings[style]["thumbnail"] = f"painting_{style}.jpg"
    return paintings


def style_card(ckpt: Checkpoint, name: str, onnx_path: Path, precision: str, source: dict,
               paintings: dict[str, dict[str, str]] | None = None) -> ModelCard:
    kind = kind_for(ckpt)
    inputs, vectors = kind.card_inputs(ckpt)
    return ModelCard(
        name=name, kind=kind.name, onnx=onnx_path.name, sha256=sha256_of(onnx_path),
        inputs=(TensorSpec(FRAME, "uint8", ("H", "W", 3), "camera frame, RGB"), *inputs),
        outputs=(TensorSpec(STYLIZED, "uint8", ("H", "W", 3), "stylized frame, RGB"),),
        precision=precision, styles=tuple(ckpt.styles), arch=ckpt.arch, source=source, style_vectors=vectors,
        paintings=paintings or {},
    )


def ship_checkpoint(ckpt_path: Path, directory: Path, name: str | None = None) -> Path:
    """``directory/NAME.pt``: the checkpoint without its optimizer state and with
    its weights in half precision, a sixth of its size, for a repository with a size budget.
    The shipped graphs are exported from this copy, so they match it exactly; training
    resumes from it in float32 (restarting Adam's moments)."""
    ckpt = Checkpoint.load(ckpt_path)
    ckpt.optimizer = None
    ckpt.state_dict = {k: v.half() if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}
    path = Path(directory) / f"{name or kind_for(ckpt).default_name(ckpt)}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt.save(path)
    return path


def relative_to_card(path: Path, out_dir: Path) -> str:
    """Where the checkpoint lies as seen from the card, so a repository can move as a whole."""
    return os.path.relpath(Path(path).resolve(), Path(out_dir).resolve())


PRECISIONS = ("fp32", "fp16", "int8")


def export_style(
    ckpt_path: Path, out_dir: Path, name: str | None = None, precision: str = "fp32",
    calibration: list[Path] | None = None, titles: dict[str, str] | None = None,
) -> Exported:
    """Export, verify against PyTorch, and only then write ``out_dir/NAME.{onnx,json}``.

    fp32 and fp16 graphs are held to the float32 network at VERIFY_SIZES (random frames, the
    checkpoint's kind's ``tolerance``, ``export.style_kinds``); int8 graphs are quantised from the fp32 graph with ``calibration`` photos
    and held to it statistically on held-out photos (``export.quantize``). The card names
    the checkpoint relative to itself when it lies inside ``out_dir``; ``titles`` name the
    paintings for the page (style -> title)."""
    ckpt = Checkpoint.load(ckpt_path)
    unknown = sorted(set(titles or {}) - set(ckpt.styles))
    if unknown:
        raise UsageError(f"--title names {', '.join(unknown)}, not a style of this checkpoint ({', '.join(ckpt.styles)})")
    kind = kind_for(ckpt)
    name = (name or kind.default_name(ckpt)) + ("" if precision == "fp32" else f"_{precision}")
    fp16 = precision == "fp16"
    graph = style_graph(ckpt, fp16=fp16, fold=True)
    reference = style_graph(ckpt)  # every precision is held to the trained float32 network's output
    example = example_inputs(ckpt, 64, 64)
    input_names = [FRAME, *kind.inputs]
    dynamic = (frame_dims(), None)[: len(example)]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        staged = Path(tmp) / f"{name}.onnx"
        export_onnx(graph, example, staged, input_names, [STYLIZED], dynamic)
        cases = [dict(zip(input_names, (t.numpy() for t in example_inputs(ckpt, h, w, seed=i + 1))))
                 for i, (h, w) in enumerate(VERIFY_SIZES)]

        def torch_answer(feeds: dict) -> dict:
            with torch.no_grad():
                return {STYLIZED: reference(*(torch.from_numpy(feeds[n]) for n in input_names)).numpy()}

        checked = verify(staged, cases, torch_answer, max_error(kind.tolerance))
        errors = {STYLIZED: max(c.errors[STYLIZED] for c in checked)}
        extra = {}
        if precision == "int8":
            roots = calibration or []
            float_graph = Path(tmp) / f"{name}.float32.onnx"
            os.replace(staged, float_graph)
            table = kind.table(ckpt)
            photos = quantize.quantize(float_graph, staged, roots, table)
            extra = {"int8_error_levels": quantize.int8_error(staged, reference, roots, table),
                     "calibration": {"folders": [str(r) for r in roots], "photos": photos,
                                     "long_side": quantize.CALIBRATION_SIDE}}
            errors = {STYLIZED: extra["int8_error_levels"]["max"]}
        source = {
            "checkpoint": relative_to_card(ckpt_path, out_dir), "checkpoint_sha256": sha256_of(ckpt_path), "step": ckpt.step, "images_seen": ckpt.images_seen,
            "images_by_kind": ckpt.images_by_kind, "teacher": ckpt.teacher,
            "train_command": ckpt.command, "train_history": ckpt.history, "train_config": ckpt.config, "losses": ckpt.losses,
            "vgg_source": ckpt.vgg_source, "train_wall_seconds": round(ckpt.wall_seconds, 1),
            "value_range_in_net": list(ckpt.value_range), "parity_max_abs_error": errors,
            "verified_sizes": [list(s) for s in VERIFY_SIZES], "torch": torch.__version__, **extra,
        }
        card = style_card(ckpt, name, staged, precision, source, write_paintings(ckpt, out_dir, titles or {}))
        final = out_dir / f"{name}.onnx"
        os.replace(staged, final)
    write_card(card, out_dir)
    return Exported(final, card, errors)


def build_parser(prog: str) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="what", required=True, metavar="{style,saliency,lens}")
    saliency_command.add_arguments(sub.add_parser(
        "saliency", help="a classifier with a saliency method's backward pass baked in",
        description=saliency_command.DESCRIPTION, formatter_class=HelpFormatter))
    lens_command.add_arguments(sub.add_parser(
        "lens", help="a lens on the classifier: activations, neighbors, fool or dream",
        description=lens_command.DESCRIPTION, formatter_class=HelpFormatter))
    p = sub.add_parser("style", help="a checkpoint written by `stylecam train`",
                       description="Checkpoint -> NAME.onnx + NAME.json, verified against PyTorch before anything is written.",
                       formatter_class=HelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a checkpoint written by `stylecam train` (e.g. runs/wave/last.pt)")
    p.add_argument("--out", type=Path, required=True, help="folder for NAME.onnx and NAME.json")
    p.add_argument("--name", help="model name (default: STYLE_ARCH, or multistyle_BODY)")
    p.add_argument("--fp16", action="store_true", help="also write a half-precision NAME_fp16.onnx for GPU serving")
    p.add_argument("--int8", action="store_true",
                   help="also write NAME_int8.onnx for CPUs: int8 convolutions, calibrated on --calibration photos "
                        "and checked against float32 on their held-out split")
    p.add_argument("--calibration", type=Path, nargs="+", metavar="DIR",
                   help="photo folder(s) for --int8 (default: the folders the checkpoint trained on, when they exist)")
    p.add_argument("--title", action="append", default=[], metavar="STYLE=TITLE",
                   help="the painting's title for the page's style picker, e.g. --title starry_night='The Starry Night' "
                        "(repeat per style; default: the style's name)")
    p.add_argument("--ship", nargs="?", type=Path, const=True, metavar="DIR",
                   help="copy the checkpoint to DIR/NAME.pt (half-precision weights, no optimizer state; DIR defaults "
                        "to OUT/checkpoints) and export from that copy (models/zoo is made with --ship models/checkpoints, "
                        "outside the package)")
    return top


def parse_titles(pairs: list[str]) -> dict[str, str]:
    """``["starry_night=The Starry Night", ...]`` -> {style: title}."""
    titles = {}
    for pair in pairs:
        style, sep, title = pair.partition("=")
        if not sep or not style.strip() or not title.strip():
            raise UsageError(f"--title {pair!r}: give STYLE=TITLE, e.g. --title starry_night='The Starry Night'")
        titles[style.strip()] = title.strip()
    return titles


def flag_forms(argv: list[str]) -> list[str]:
    """``--saliency METHOD ...`` -> ``saliency METHOD ...`` and ``--neighbors DIR [DIR ...] ...``
    -> ``lens neighbors --photos DIR [DIR ...] ...``; other command lines are unchanged."""
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        if flag not in ("--saliency", "--neighbors"):
            continue
        values = [value] if value else list(itertools.takewhile(lambda a: not a.startswith("-"), argv[i + 1:]))
        rest = argv[:i] + argv[i + 1 + (0 if value else len(values)):]
        if not values:
            raise UsageError(f"{flag} needs {'a METHOD' if flag == '--saliency' else 'photo folders: --neighbors DIR [DIR ...]'}")
        if flag == "--saliency":
            return ["saliency", values[0], *values[1:], *rest]
        return ["lens", "neighbors", "--photos", *values, *rest]
    return argv


def main(argv: list[str], prog: str = "stylecam export") -> int:
    argv = flag_forms(argv)
    if argv and argv[0] not in ("style", "saliency", "lens", "-h", "--help"):
        argv = ["style", *argv]  # the older form: stylecam export CKPT ...
    args = build_parser(prog).parse_args(argv)
    if args.what == "saliency":
        return saliency_command.run(args)
    if args.what == "lens":
        return lens_command.run(args)
    checkpoint = args.checkpoint
    if args.ship:
        checkpoint = ship_checkpoint(checkpoint, args.out / "checkpoints" if args.ship is True else args.ship, args.name)
        print(f"wrote {checkpoint} (weights in half precision, no optimizer state)")
    calibration = args.calibration
    if args.int8 and calibration is None:
        calibration = [Path(p) for p in Checkpoint.load(checkpoint).config.get("content", ()) if Path(p).is_dir()]
        if not calibration:
            raise ImageError("--int8 needs photos: the folders this checkpoint trained on are not here; pass --calibration DIR")
    titles = parse_titles(args.title)
    precisions = ["fp32", *(["fp16"] if args.fp16 else []), *(["int8"] if args.int8 else [])]
    for precision in precisions:
        done = export_style(checkpoint, args.out, args.name, precision, calibration, titles)
        if precision == "int8":
            e = done.card.source["int8_error_levels"]
            check = f"|int8 - float32| on {e['photos']} held-out photos: mean {e['mean']:.2f}, p99 {e['p99']:.0f}, max {e['max']:.0f} levels"
        else:
            check = f"max |onnxruntime - torch| = {done.errors['stylized']:.0f} levels at {VERIFY_SIZES}"
        print(f"wrote {done.onnx} and {done.onnx.with_suffix('.json').name} ({check})")
    return 0
