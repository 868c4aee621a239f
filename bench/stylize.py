"""``stylecam bench stylize``: styled frames per second of ``stylecam stylize`` on a live stream.

The ``ffmpeg`` command sends ``testsrc2`` in real time (``-re``), H.264 in MPEG-TS over
TCP on 127.0.0.1, and stylize reads it as it reads any stream: the newest frame wins, the
rest are dropped, and the styled frames are encoded to H.264 again. So a row says how much
of a live camera or stream one model keeps at one size, sender, model and encoder sharing
this machine. The sender starts when stylize connects, so loading the model costs nothing.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stylecam.bench.report import add_output_flags, publish
from stylecam.server.help import HelpFormatter, frame_size
from stylecam.server.media_io import MediaError
from stylecam.server.ort_model import OrtModel
from stylecam.server.stylize import StylizeError, Stylizer, VideoOptions, default_model, stylize_video
from stylecam.server.testing.client import free_port

USER_ERRORS = (MediaError, StylizeError, OSError)
CONNECT_S = 10.0  # for the sender to start listening


def sender(port: int, size: tuple[int, int], fps: float, seconds: float) -> subprocess.Popen:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise OSError("the ffmpeg command is not installed; it sends the live stream")
    return subprocess.Popen([ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
                             "-i", f"testsrc2=size={size[0]}x{size[1]}:rate={fps:g}", "-t", f"{seconds:g}",
                             "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
                             "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"], stdin=subprocess.DEVNULL)


def one_row(stylizer: Stylizer, args: argparse.Namespace, out: Path) -> dict:
    port = free_port()
    proc = sender(port, args.source, args.fps, args.seconds)
    try:
        deadline = time.monotonic() + CONNECT_S
        while True:  # until ffmpeg listens: a refused connection opens nothing on either side
            try:
                report = stylize_video(stylizer, f"tcp://127.0.0.1:{port}", str(out), VideoOptions(timeout=args.seconds + 10))
                break
            except MediaError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        proc.wait(timeout=30)
    return {"frames": report.frames, "dropped": report.dropped, "sent": round(args.seconds * args.fps), "fps": report.fps}


def main(argv: list[str], prog: str = "stylecam bench stylize") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("models", nargs="*", type=Path, metavar="MODEL.onnx",
                   help="exported style models (default: the one stylize picks, the page's first style as the CPU runs it)")
    p.add_argument("--sizes", default="full,320", metavar="full|N[,...]",
                   help="stylize's --size for each row: the long side styled, full: as sent (default: %(default)s)")
    p.add_argument("--source", type=frame_size, default=(640, 480), metavar="WxH", help="the stream's frame size (default: 640x480)")
    p.add_argument("--fps", type=float, default=30.0, help="the stream's frame rate (default: 30)")
    p.add_argument("--seconds", type=float, default=20.0, help="the stream's length per row (default: 20)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads, as stylize's --threads (default: 0, all cores)")
    add_output_flags(p, "stylize")
    args = p.parse_args(argv)
    sizes = [None if s == "full" else int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="stylecam-bench-stylize-") as tmp:
        for path in args.models or [default_model("cpu")]:
            model = OrtModel.load(path, "cpu", args.threads)
            for size in sizes:
                row = one_row(Stylizer(model, None, size), args, Path(tmp) / "out.ts")
                rows.append({"model": path.stem, "size": size, **row})
                print(f"  done: {path.stem} at {size or 'full'}: {row['frames']} of {row['sent']}", file=sys.stderr, flush=True)
    w, h = args.source
    lines = [f"`stylecam stylize` on a live stream: {w}x{h} H.264 at {args.fps:g} fps for {args.seconds:g} s from ffmpeg, "
             "styled frames encoded to H.264 again, sender and stylize on this machine",
             "| model | styled at | styled fps | frames styled |", "| --- | --- | ---: | ---: |"]
    for r in rows:
        at = f"{w}x{h}" if r["size"] is None else f"`--size {r['size']}` ({round(w * r['size'] / max(w, h))}x{round(h * r['size'] / max(w, h))})"
        lines.append(f"| `{r['model']}` | {at} | {r['fps']:.1f} | {r['frames']} of {r['sent']} |")
    publish(args, prog, argv, lines, {"source": [w, h], "fps": args.fps, "seconds": args.seconds, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
