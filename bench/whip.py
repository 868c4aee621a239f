"""``stylecam bench whip``: a WHIP publisher and WHEP viewers against a real ``stylecam serve``.

One aiortc publisher sends a synthetic camera (a frame counter drawn into each frame) to
``POST /whip``; viewers pull the styled stream from ``POST /whep/ID``. Latency runs from the
publisher's encoder to the first viewer's decoder, matched by pts as ``bench e2e`` does.
Each row is one number of viewers, measured in the same run, with the server's CPU time
(all its threads) over the window: the stream is styled and encoded once, whatever the
number of viewers. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

from stylecam.bench.e2e import _percentile
from stylecam.bench.report import add_output_flags, publish
from stylecam.server.help import HelpFormatter, frame_size
from stylecam.server.model_card import DEFAULT_ZOO
from stylecam.server.testing.client import CounterCamera, ServerStartError, start_server
from stylecam.server.testing.whip_client import WhepViewer, WhipError, WhipPublisher

USER_ERRORS = (OSError, WhipError, ServerStartError)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(url: str, pid: int, args: argparse.Namespace) -> list[dict]:
    camera = CounterCamera(args.fps, *args.size)
    publisher = WhipPublisher(url, camera, "style=none")
    viewers: list[WhepViewer] = []
    rows = []
    try:
        await publisher.publish()
        for count in sorted(args.viewers):
            while len(viewers) < count:
                viewer = WhepViewer(f"{url}/whep/{publisher.stream_id}", camera, decode_every=10)
                await viewer.connect()
                viewers.append(viewer)
            deadline = time.monotonic() + 15
            while viewers[0].received.pts_offset is None and time.monotonic() < deadline:  # pass-through until the counter reads back
                await asyncio.sleep(0.1)
            await publisher.control({"type": "config", "style": args.style})
            await asyncio.sleep(args.warmup)
            first = viewers[0].received
            before = (await publisher.stats(), cpu_seconds(pid), len(first.latencies_ms), first.frames, time.monotonic())
            await asyncio.sleep(args.seconds)
            stats, cpu, span = await publisher.stats(), cpu_seconds(pid), time.monotonic() - before[4]
            latencies = first.latencies_ms[before[2]:]
            encoded = stats["frames_encoded"] - before[0]["frames_encoded"]
            rows.append({
                "viewers": count, "fps": (first.frames - before[3]) / span, "encoded_fps": encoded / span,
                "latency_ms_median": statistics.median(latencies) if latencies else None,
                "latency_ms_p95": _percentile(latencies, 0.95), "latency_samples": len(latencies),
                "server_cores": (cpu - before[1]) / span, "server_cpu_ms_per_frame": 1000 * (cpu - before[1]) / max(encoded, 1),
                "server_ms": stats.get("ms", {}),
            })
            print(f"  done: {count} viewer(s)", file=sys.stderr, flush=True)
    finally:
        await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
        await publisher.close()
    return rows


def main(argv: list[str] | None = None, prog: str = "stylecam bench whip") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--models", type=Path, default=DEFAULT_ZOO, help="model directory the server loads (default: the shipped models)")
    p.add_argument("--style", default="multistyle_paint", help="style the stream is switched to once the counter reads back")
    p.add_argument("--viewers", type=lambda t: [int(x) for x in t.split(",")], default=[1, 3], metavar="N[,N...]",
                   help="viewer counts, one row each, viewers added between rows (default: 1,3)")
    p.add_argument("--size", type=frame_size, default=(640, 480), metavar="WxH", help="the publisher's frame size (default: 640x480)")
    p.add_argument("--fps", type=float, default=30.0, help="the publisher's frame rate")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before each row is measured")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="--device for the server")
    add_output_flags(p, "whip")
    args = p.parse_args(argv)
    proc, url = start_server(args.models, ["--device", args.device])
    try:
        rows = asyncio.run(asyncio.wait_for(_run(url, proc.pid, args), 60 + len(args.viewers) * (args.seconds + args.warmup + 20)))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = [f"WHIP publisher {args.size[0]}x{args.size[1]} at {args.fps:.0f} fps, style {args.style}, {args.seconds:.0f} s per row, "
             "publisher, viewers and server on this machine",
             "| viewers | fps (first viewer) | encoded fps | latency p50 | p95 | server cores | server CPU ms/frame | vs first row |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = r["server_cpu_ms_per_frame"] / rows[0]["server_cpu_ms_per_frame"]
        p50, p95 = (f"{v:.0f} ms" if v is not None else "-" for v in (r["latency_ms_median"], r["latency_ms_p95"]))
        lines.append(f"| {r['viewers']} | {r['fps']:.1f} | {r['encoded_fps']:.1f} | {p50} | {p95} | {r['server_cores']:.2f} | "
                     f"{r['server_cpu_ms_per_frame']:.1f} | {ratio:.2f}x |")
    publish(args, prog, argv or [], lines, {"size": list(args.size), "style": args.style, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
