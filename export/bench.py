"""``stylecam bench NAME``: benchmark scripts, each printing a table and writing JSON."""

from __future__ import annotations

from export.cli import dispatch

BENCHMARKS: dict[str, tuple[str, str]] = {
    "style": ("server.bench_style", "onnxruntime ms per frame of style models (ours, and --foreign ONNX files) at 320x240 and 640x480"),
    "e2e": ("server.bench_e2e", "real WebRTC peers against a real server: fps, glass-to-glass latency, drops"),
    "quality": ("export.bench_quality", "style and content losses on held-out photos, and video flicker, of shipped styles"),
    "deletion": ("export.bench_deletion", "saliency faithfulness: deletion AUC of each method against a random map"),
    "parity": ("export.bench_parity", "saliency graphs against PyTorch float32 and float64: how far float32 rounding moves the maps"),
    "train": ("export.bench_train", "seconds per training step, fp32 against bf16 autocast + channels_last, per body and crop size"),
    "sheet": ("export.bench_sheet", "one JPEG: held-out photos x our styles beside a peer's arbitrary-style network on the same paintings"),
}


def main(argv: list[str], prog: str = "stylecam bench") -> int:
    return dispatch(BENCHMARKS, argv, prog)
