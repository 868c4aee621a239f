"""``stylecam stylize``: images, videos, cameras and streams through an exported style model, onnxruntime only.

Video goes through PyAV (FFmpeg, ``media_io``): H.264 out by default, audio copied
untouched, live sources newest-frame-wins. Files are written to a temporary name and
renamed when complete, so an error or an interrupt never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from stylecam.server.control import weight_items
from stylecam.server.help import HelpFormatter
from stylecam.server.images import IMAGE_SUFFIXES, ImageFileError, read_rgb, scale_to_long_side, write_rgb
from stylecam.server.media_io import (
    STDIO,
    LiveReader,
    MediaError,
    Sink,
    check_encoder,
    is_stream,
    open_source,
    stream_name,
)
from stylecam.server.model_card import DEFAULT_ZOO, CardError
from stylecam.server.ort_model import DeviceError, OrtModel, providers_for
from stylecam.server.registry import Registry, scan
from stylecam.server.runner import StyleRunner
from stylecam.server.style_kinds import STYLE_KINDS, blends
from stylecam.server.user_styles import LearntStyle, read_styles, styles_dir, styles_for

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".flv", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".3gp", ".ogv", ".wmv", ".y4m"})


class StylizeError(ValueError):
    """Bad input to stylize; the message names the value and the fix."""


USER_ERRORS = (CardError, DeviceError, StylizeError, ImageFileError, MediaError)


def parse_weights(text: str | None, styles: tuple[str, ...]) -> np.ndarray:
    """``"a=0.5,b=0.5"`` -> float32 vector in card order, normalised to sum 1.

    No text means the first style alone.
    """
    weights = np.zeros(len(styles), dtype=np.float32)
    if not text:
        weights[0] = 1.0
        return weights
    expected = f"expected STYLE=FLOAT with STYLE one of {', '.join(styles)}"
    try:
        items = weight_items(text)
    except ValueError as e:
        raise StylizeError(f"--weights item {e.args[0]!r}: {expected}") from None
    for name, value in items:
        if name not in styles:
            raise StylizeError(f"--weights item {name + '=' + value!r}: {expected}")
        try:
            weights[styles.index(name)] = float(value)
        except ValueError:
            raise StylizeError(f"--weights {name}={value!r}: not a number") from None
    if (weights < 0).any() or weights.sum() <= 0:
        raise StylizeError("--weights must be non-negative and not all zero")
    return weights / weights.sum()


class Stylizer:
    """One style model plus the fixed extra input (the blended style vector) for every frame."""

    def __init__(self, model: OrtModel, weights_text: str | None, long_side: int | None = None,
                 learnt: Sequence[LearntStyle] = ()) -> None:
        """``learnt``: styles from ``stylecam learn``; those that fit the model join its own."""
        card = model.card
        if card.kind not in STYLE_KINDS:
            raise StylizeError(f"{model.path} is a {card.kind} model; stylize needs a style model (use `stylecam explain` for saliency)")
        if not blends(card.kind) and weights_text:
            raise StylizeError(f"{model.path} is a single-style model; --weights is only for multi-style models")
        if long_side is not None and long_side < 16:
            raise StylizeError(f"--size {long_side}: must be at least 16 pixels")
        self.runner = StyleRunner(model, styles_for(card, list(learnt)))
        self.long_side = long_side
        self.style = self.runner.style(lambda styles: parse_weights(weights_text, styles))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.long_side is not None:
            rgb = scale_to_long_side(rgb, self.long_side)
        return self.runner(rgb, self.style)


def stylize_image(stylizer: Stylizer, src: Path, dst: Path) -> None:
    write_rgb(dst, stylizer(read_rgb(src)))


@dataclass
class VideoOptions:
    """How a video is read and written: the encoder, the container, when to stop."""

    codec: str | None = None
    format: str | None = None
    all_frames: bool = False
    max_frames: int | None = None
    timeout: float = 10.0


@dataclass
class VideoReport:
    frames: int
    dropped: int
    fps: float
    note: str = ""
    reader_blocked: bool = False  # stopped by Ctrl-C while a live source's reader waits in a read no one can wake

    def __str__(self) -> str:
        dropped = f", {self.dropped} dropped" if self.dropped else ""
        return f"{self.frames} frames{dropped}, {self.fps:.1f} fps{self.note}"


def stylize_video(stylizer: Stylizer, src: str, dst: str, options: VideoOptions) -> VideoReport:
    """Source -> model -> sink with a progress bar. A live source drops the frames the model
    has no time for (newest wins) and ends on Ctrl-C with its output complete; a file's
    every frame is styled and Ctrl-C leaves nothing behind."""
    from tqdm import tqdm

    source = open_source(src, options.timeout)
    try:
        sink = Sink(dst, source, options.codec, options.format, options.timeout)
    except BaseException:
        source.close()
        raise
    reader: LiveReader | None = None
    frames, note, start, interrupted = 0, "", time.monotonic(), False
    try:  # from here on every way out, a Ctrl-C at any point included, closes or aborts both ends
        reader = LiveReader(source.items()) if source.live and not options.all_frames else None
        label = stream_name(src) if is_stream(src) else Path(src).name
        with tqdm(total=source.frames, desc=label, unit="frame", dynamic_ncols=True) as bar:
            for item in reader if reader is not None else source.items():
                if isinstance(item, av.Packet):
                    sink.copy(item)
                    continue
                sink.write(stylizer(item.to_ndarray(format="rgb24")), item.pts)
                frames += 1
                bar.update(1)
                if reader is not None and reader.dropped:
                    bar.set_postfix(dropped=reader.dropped, refresh=False)
                if frames == options.max_frames:
                    break
    except KeyboardInterrupt:
        if reader is None:
            sink.abort()
            raise
        note, interrupted = ", stopped by Ctrl-C", True
    except BaseException:
        sink.abort()
        raise
    finally:
        blocked = reader is not None and not reader.stop(options.timeout)
        if not blocked:
            source.close()
    if reader is not None and reader.error:
        note += f", input ended: {reader.error}"
    if frames == 0:
        sink.abort()
        raise StylizeError(f"{src}: no video frames came{note}")
    sink.close()
    return VideoReport(frames, reader.dropped if reader is not None else 0, frames / (time.monotonic() - start), note,
                       blocked and interrupted)


def output_path(src: str, out: str, model_name: str, many: bool) -> str:
    """``--out`` is the file, URL or ``-`` for one input, or a folder (created) for several."""
    if is_stream(out):
        if many:
            raise StylizeError(f"--out {out}: a stream takes one input; give one, or a folder for several")
        return out
    if not many and Path(out).suffix:
        return out
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if is_stream(src):
        return str(folder / f"{stream_name(src)}_{model_name}.mp4")
    suffix = Path(src).suffix
    return str(folder / f"{Path(src).stem}_{model_name}{suffix if suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES else '.png'}")


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog="examples: stylecam stylize photo.jpg --model models/zoo/multistyle_paint.onnx "
               "--weights starry_night=0.5,wave=0.5 --out photo_styled.jpg; "
               "stylecam stylize rtmp://127.0.0.1/live/in --model models/zoo/multistyle_paint.onnx --size 320 "
               "--out rtmp://127.0.0.1/live/out",
    )
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="images; videos (.mp4 .mkv .mov .webm .avi .flv .ts ...); a camera (0, /dev/video0); "
                        "a stream URL (rtsp:// rtmp:// srt:// http://); or - (stdin)")
    p.add_argument("--model", type=Path,
                   help="an exported style model NAME.onnx (its NAME.json card beside it); default: the style the "
                        f"page starts in, the first multi-style network in {DEFAULT_ZOO}, in the variant the server "
                        "runs on this device")
    p.add_argument("--weights", help="multi-style blend, STYLE=W,STYLE=W (normalised to sum 1), learnt styles "
                                     "(`stylecam learn`) included; default: the first style")
    p.add_argument("--styles-dir", type=Path, metavar="DIR",
                   help="learnt styles (default: $XDG_DATA_HOME/stylecam/styles, else ~/.local/share/stylecam/styles)")
    p.add_argument("--out", default="stylized",
                   help="output file (one input), folder (several), rtmp:// or srt:// URL, or - (stdout, MPEG-TS)")
    p.add_argument("--size", type=int, default=None, metavar="N",
                   help="scale inputs so their long side is N pixels first (brush strokes keep the size they were "
                        "trained at, so a smaller input looks more painted; the CPU server styles at 400x300); default: as is")
    p.add_argument("--codec", default=None,
                   help="video encoder, e.g. libx264, libx265, libvpx-vp9, mpeg4 (default: libx264, yuv420p; "
                        "libvpx-vp9 for .webm); audio is always copied untouched")
    p.add_argument("--format", default=None,
                   help="output container, e.g. mp4, matroska, flv, mpegts (default: from the suffix; flv for rtmp://, "
                        "mpegts for srt:// and -)")
    p.add_argument("--all-frames", action="store_true",
                   help="style every frame of a live source too (a camera, stream or pipe normally drops the frames "
                        "the model has no time for, newest frame wins)")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N video frames; default: the whole input")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for a stream to connect or send data before giving up")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="onnxruntime device")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all cores)")
    return p


def default_model(device: str) -> Path:
    """The shipped style the page and WHIP start in, as ``serve`` would run it here."""
    resolved = "cuda" if "CUDAExecutionProvider" in providers_for(device) else "cpu"
    entries = scan(DEFAULT_ZOO, resolved)
    name = Registry(entries, resolved, {}).catalog().default_style()
    if name is None:
        raise StylizeError(f"no style model in {DEFAULT_ZOO}; pass --model NAME.onnx")
    return entries[name].onnx


def is_video(src: str) -> bool:
    return is_stream(src) or Path(src).suffix.lower() in VIDEO_SUFFIXES


def main(argv: list[str], prog: str = "stylecam stylize") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.codec:
        check_encoder(args.codec)
    if args.frames is not None and args.frames < 1:
        raise StylizeError(f"--frames {args.frames}: must be at least 1")
    model = args.model or default_model(args.device)
    stylizer = Stylizer(OrtModel.load(model, args.device, args.threads), args.weights, args.size,
                        read_styles(styles_dir(args.styles_dir)))
    missing = [src for src in args.inputs if not is_stream(src) and not Path(src).is_file()]
    if missing:
        raise StylizeError(f"no such file: {', '.join(missing)}")
    options = VideoOptions(args.codec, args.format, args.all_frames, args.frames, args.timeout)
    report = sys.stderr if args.out == STDIO else sys.stdout
    many = len(args.inputs) > 1
    blocked = False
    for src in args.inputs:
        dst = output_path(src, args.out, stylizer.runner.model.card.name, many)
        if not is_video(src) and is_stream(dst):
            raise StylizeError(f"{src}: an image cannot go to {dst}; give a file name with --out")
        if is_video(src):
            done = stylize_video(stylizer, src, dst, options)
            print(f"{src} -> {dst} ({done})", file=report)
            blocked |= done.reader_blocked
        else:
            stylize_image(stylizer, Path(src), Path(dst))
            print(f"{src} -> {dst}", file=report)
    report.flush()
    if blocked:
        # Every output is complete, but a live source's reader thread still sits in a read of a
        # stream that stays open (stdin, a stalled camera) and no call wakes it. Tearing its
        # container down at interpreter exit can then hang (twice in two full-suite runs the
        # Ctrl-C test's process had not exited 30 s after Ctrl-C), so the process ends here.
        sys.stderr.flush()
        os._exit(0)
    return 0
