"""The ``stylecam`` command: dispatches to one module per subcommand.

Subcommand modules are imported only when chosen, so ``stylecam serve`` and
``stylecam stylize`` never import torch. Each module has ``main(argv, prog) -> int`` and
``USER_ERRORS``, the exception types that mean bad input: those become one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["dispatch", "main"]


Table = dict[str, tuple["str | Table", str]]  # name -> (module, or a table of its own subcommands; one-line help)

BENCHMARKS: Table = {
    "style": ("stylecam.bench.style", "onnxruntime ms per frame of style models (ours, and --foreign ONNX files) at 320x240 and 640x480"),
    "e2e": ("stylecam.bench.e2e", "real WebRTC peers against a real server: fps, glass-to-glass latency, drops"),
    "quality": ("stylecam.bench.quality", "style and content losses on held-out photos, and video flicker, of shipped styles"),
    "whip": ("stylecam.bench.whip", "a WHIP publisher and WHEP viewers against a real server: fps, latency, server CPU per viewer count"),
    "deletion": ("stylecam.bench.deletion", "saliency faithfulness: deletion AUC of each method against a random map"),
    "parity": ("stylecam.bench.parity", "saliency graphs against PyTorch float32 and float64: how far float32 rounding moves the maps"),
    "train": ("stylecam.bench.train", "seconds per training step, fp32 against bf16 autocast + channels_last, per body and crop size"),
    "gpu": ("stylecam.bench.gpu", "the GPU path: checks onnxruntime really runs on CUDA, then times every graph and end-to-end peers at 1280x720"),
    "page": ("stylecam.bench.page", "one JPEG: screenshots of the live page with a photo as the camera, one per --process-size"),
    "sheet": ("stylecam.bench.sheet", "one JPEG: held-out photos x our styles beside a peer's arbitrary-style network on the same paintings"),
    "lens": ("stylecam.bench.lens", "onnxruntime ms per run of each saliency and lens graph on one frame"),
    "stylize": ("stylecam.bench.stylize", "how much of a live stream `stylize` keeps at each --size"),
    "lab": ("stylecam.bench.lab", "the CPU time of `stylecam lab` commands, each in its own process"),
}

LAB: Table = {
    "gatys": ("stylecam.models.lab.gatys", "neural style transfer by optimisation, one style or a weighted blend (Gatys et al.)"),
    "texture": ("stylecam.models.lab.texture", "Gram-matrix texture synthesis from noise; --layers sets the feature scale"),
    "invert": ("stylecam.models.lab.invert", "feature inversion: a picture from one VGG layer's activation (Mahendran & Vedaldi)"),
    "classviz": ("stylecam.models.lab.classviz", "class-model visualisation: gradient ascent on a class score (Simonyan et al.)"),
    "filters": ("stylecam.models.lab.filters", "the first layer's filters as a grid of colour tiles"),
    "fool": ("stylecam.models.lab.fool", "a fooling image: an invisible change that makes the classifier say a chosen class"),
    "patches": ("stylecam.models.lab.patches", "the photo patches of a folder that most activate one VGG-16 unit"),
    "neighbors": ("stylecam.models.lab.neighbors", "nearest neighbours of a photo in feature space against pixel space"),
    "tsne": ("stylecam.models.lab.tsne", "a t-SNE map of a folder's photos in the classifier's feature space"),
}

SUBCOMMANDS: Table = {
    "train": ("stylecam.models.train", "train a style network (single or multi-style) with perceptual losses"),
    "learn": ("stylecam.models.learn", "learn a new painting as a style of the shipped multi-style network, in minutes"),
    "teach": ("stylecam.models.teacher", "render a teacher network's stylized photos for `train --teacher` (distillation)"),
    "export": ("stylecam.export.command", "turn a checkpoint (or a pretrained classifier) into verified ONNX + card"),
    "stylize": ("stylecam.server.stylize", "stylize images, videos, a camera or a stream (RTMP, pipes) with an exported model (onnxruntime only)"),
    "explain": ("stylecam.server.explain", "heat map overlays + top-5 classes for images with an exported saliency model"),
    "serve": ("stylecam.server.__main__", "serve the live webcam page: WebRTC in, stylized frames + saliency out"),
    "lab": (LAB, "the lecture's slow, optimisation-based methods, each a command that writes pictures (gatys, texture, ...)"),
    "bench": (BENCHMARKS, "benchmarks that print a table and write JSON (style, train, quality, sheet, page, e2e, whip, deletion, parity, lens, stylize, lab, gpu)"),
}


def _usage(commands: Table, prog: str) -> str:
    width = max(map(len, commands))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in commands.items()]
    return (f"usage: {prog} COMMAND [options]   ({prog} COMMAND --help for its options)\n\ncommands:\n"
            + "\n".join(lines))


def dispatch(commands: Table, argv: list[str], prog: str) -> int:
    """Import the chosen command's module and run it; bad input -> one line, exit 2."""
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(commands, prog))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"{prog}: unknown command {name!r}; valid: {', '.join(commands)}", file=sys.stderr)
        return 2
    target = commands[name][0]
    if isinstance(target, dict):
        return dispatch(target, rest, f"{prog} {name}")
    module = importlib.import_module(target)
    try:
        return module.main(rest, prog=f"{prog} {name}")
    except KeyboardInterrupt:
        print(f"{prog} {name}: interrupted", file=sys.stderr)
        return 130
    except getattr(module, "USER_ERRORS", ()) as e:
        print(f"{prog} {name}: error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    return dispatch(SUBCOMMANDS, sys.argv[1:] if argv is None else argv, "stylecam")

