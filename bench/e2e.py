"""``stylecam bench e2e``: real aiortc clients against a real ``stylecam serve`` process.

Each client (``stylecam.server.testing.client``) sends a synthetic 640x480 camera at 30 fps.
Glass-to-glass latency runs from the moment the client's camera handed a frame to its
encoder to the moment the styled frame came out of the client's decoder, matched by pts.

Reports, per scenario (1, 2, 4 peers x style only / style + saliency / style + each
``--lens`` / style while the server learns ``--learning``'s painting): received fps per
peer, median and p95 latency, dropped ratio (sent frames never seen back), and a lens's
runs per second as the page shows them. Prints a table and writes JSON. It needs a style
model (``--models``, default: the shipped ones).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from stylecam.bench.report import add_output_flags, publish
from stylecam.server.model_card import DEFAULT_ZOO
from stylecam.server.testing.client import HEIGHT, WIDTH, Client, ServerStartError, get_json, start_server


class E2EError(Exception):
    """Bad flags, or a server that cannot run the asked-for bench."""


USER_ERRORS = (OSError, E2EError, ServerStartError)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _scenario(url: str, peers: int, config: dict, seconds: float, fps: float, warmup: float,
                    size: tuple[int, int] = (WIDTH, HEIGHT), start_at: float | None = None) -> dict:
    """``peers`` clients in this process; measuring starts after ``warmup`` seconds, and not
    before ``start_at`` (``time.monotonic()``, which processes share) when given, so clients
    in several processes measure the same seconds."""
    clients = [Client(url, fps=fps, decode_every=10, size=size) for _ in range(peers)]
    try:
        for c in clients:  # one after another: a server holds few unconnected offers per address (--max-pending)
            await c.connect()
        for c in clients:  # pass-through until each client has read its counter back
            c.send({"type": "config", "style": None, "saliency": "off"})
        deadline = time.monotonic() + 15
        while any(c.received.pts_offset is None for c in clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for c in clients:
            c.send({"type": "config", **config})
        await asyncio.sleep(max(warmup, (start_at or 0.0) - time.monotonic()))  # sessions open, saliency starts, rates settle
        starts = [(c.received.frames, c.camera.sent, len(c.received.latencies_ms), len(c.received.seen), len(c.messages)) for c in clients]
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        span = time.monotonic() - t0
        rows = []
        for c, (f0, s0, l0, n0, m0) in zip(clients, starts):
            sent = c.camera.sent - s0
            seen = len(c.received.seen) - n0
            stats = [m for m in c.messages[m0:] if m.get("type") == "stats"]
            rows.append(
                {
                    "fps": (c.received.frames - f0) / span,
                    "latencies": c.received.latencies_ms[l0:],
                    "dropped_ratio": 1.0 - min(1.0, seen / sent) if sent else None,
                    "sent_fps": sent / span,
                    "server_ms": stats[-1]["ms"] if stats else {},
                    "lens_fps": statistics.mean(m.get("lens_fps", 0.0) for m in stats) if stats else None,
                    "pts_checks": (c.received.pts_agree, c.received.pts_checks),
                }
            )
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    latencies = [x for r in rows for x in r["latencies"]]
    return {
        "peers": peers,
        "config": config,
        "fps_per_peer": statistics.mean(r["fps"] for r in rows),
        "sent_fps_per_peer": statistics.mean(r["sent_fps"] for r in rows),
        "latency_ms_median": statistics.median(latencies) if latencies else None,
        "latency_ms_p95": _percentile(latencies, 0.95),
        "latency_samples": len(latencies),
        "dropped_ratio": statistics.mean(r["dropped_ratio"] for r in rows if r["dropped_ratio"] is not None),
        "server_ms_peer0": rows[0]["server_ms"],
        "lens_fps_per_peer": statistics.mean(r["lens_fps"] for r in rows) if config.get("lens", "off") != "off" and all(
            r["lens_fps"] is not None for r in rows) else None,
        "pts_checks_agree_of": [sum(r["pts_checks"][0] for r in rows), sum(r["pts_checks"][1] for r in rows)],
    }


@contextlib.contextmanager
def learning(url: str, painting: Path, timeout: float = 120.0) -> Iterator[None]:
    """The server learns ``painting`` (POST /api/styles) for the length of the block: entered
    once its worker reports steps, cancelled on the way out, so it leaves no style behind."""
    request = urllib.request.Request(f"{url}/api/styles?name=bench_learning", data=painting.read_bytes(), method="POST")
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as e:
        raise E2EError(f"--learning: the server refused the painting: {json.loads(e.read()).get('error', e.code)}") from None
    try:
        deadline = time.monotonic() + timeout
        while (job := get_json(f"{url}/api/styles/learning"))["state"] != "learning" or not job.get("step"):
            if job["state"] not in ("starting", "learning") or time.monotonic() > deadline:
                raise E2EError(f"--learning: the server did not start learning ({job.get('error') or job['state']})")
            time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/styles/learning", method="DELETE"), timeout=30).close()
        deadline = time.monotonic() + 30
        while get_json(f"{url}/api/styles/learning")["state"] in ("starting", "learning") and time.monotonic() < deadline:
            time.sleep(0.2)  # the worker is gone before the next row starts one


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


STAGES = ("decode", "style", "upscale+mix", "overlay", "lens-draw", "encode-prep")  # the server's per-frame stages, in order


def _run_sizes(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Every scenario at every --process-size, a fresh server per size (or the --url one)."""
    sizes = args.process_size.split(",")
    if args.url and len(sizes) > 1:
        raise E2EError("--url benches the server already running there: give one --process-size (its own)")
    if args.learning and not args.learning.is_file():
        raise E2EError(f"--learning {args.learning}: no such painting")
    results, health = [], {}
    for size in sizes:
        styles_dir = tempfile.TemporaryDirectory(prefix="stylecam-bench-styles-")  # a learnt style never reaches the user's folder
        proc, url = (None, args.url) if args.url else start_server(
            args.models, ["--device", args.device, "--max-peers", "8", "--max-pending", "8", "--process-size", size,
                          "--styles-dir", styles_dir.name, "--learn-minutes", "10"])
        try:
            models = get_json(f"{url}/api/models")["models"]
            health = get_json(f"{url}/api/health")
            styles = [m["name"] for m in models if m.get("stylizes")]
            methods = [m["method"] for m in models if m["kind"] == "saliency"]
            style = args.style or (styles[0] if styles else None)
            if style is None:
                raise E2EError(f"no style model under {args.models}; export one (stylecam export) or pass --models")
            method = args.saliency or (methods[0] if methods else None)
            configs = [("style", {"style": style, "saliency": "off"})]
            if method:
                configs.append((f"style+{method}", {"style": style, "saliency": method, "opacity": 0.4}))
            lenses = [m["method"] for m in models if m["kind"] == "lens"]
            for lens in filter(None, args.lens.split(",")):
                if lens not in lenses:
                    raise E2EError(f"--lens {lens}: no such lens under {args.models}; loaded: {', '.join(lenses) or 'none'}")
                configs.append((f"style+{lens}", {"style": style, "saliency": "off", "lens": lens}))
            runs = [(label, config, contextlib.nullcontext) for label, config in configs]
            if args.learning:
                runs.append(("style, learning", configs[0][1], functools.partial(learning, url, args.learning)))
            for label, config, around in runs:
                for n in (int(x) for x in args.peers.split(",")):
                    with around():
                        result = asyncio.run(_scenario(url, n, config, args.seconds, args.fps, args.warmup))
                    result.update(scenario=label, process_size=size, style=style)
                    results.append(result)
                    print(f"  done: {size} {label} x{n} peers", file=sys.stderr, flush=True)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
            styles_dir.cleanup()
    return health, results


def main(argv: list[str] | None = None, prog: str = "stylecam bench e2e") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=DEFAULT_ZOO, help="model directory the server loads (default: the shipped models)")
    p.add_argument("--url", default=None, help="bench a server already running here instead of starting one")
    p.add_argument("--peers", default="1,2,4", help="comma-separated peer counts (default: 1,2,4)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per scenario (default: 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds per scenario before measuring, while sessions open and rates settle (default: 3)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate each client sends at (default: 30)")
    p.add_argument("--style", default=None, help="style model to use (default: the first the server lists)")
    p.add_argument("--saliency", default=None, help="saliency method for the style+saliency runs (default: the first loaded)")
    p.add_argument("--lens", default="", metavar="LENS[,LENS...]",
                   help="also run style + each of these lenses (activations, neighbors, fool, dream), reporting its runs per second")
    p.add_argument("--learning", type=Path, metavar="PAINTING",
                   help="also run the style scenario while the server learns this painting (as the page's Learn does), "
                        "cancelled after each row; a started server keeps the style in a temporary folder")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="--device for the started server (default: auto)")
    p.add_argument("--process-size", default="auto", metavar="auto|full|WxH[,...]",
                   help="--process-size for the started server; several (comma-separated) are measured in one run, "
                        "a fresh server each (default: auto, the server's own choice)")
    add_output_flags(p, "e2e")
    args = p.parse_args(argv)
    health, results = _run_sizes(args)
    lines = [f"device: {health['device']}  ({args.seconds:.0f} s per row, {args.fps:.0f} fps sent at 640x480; "
             "stage times: the server's per-frame means, ms, first peer)",
             "| process size | scenario | peers | fps/peer | sent | latency p50 | p95 | dropped | lens runs/s | lens ms | " + " | ".join(STAGES) + " |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in STAGES) + " |"]
    for r in results:
        stages = " | ".join(_fmt(r["server_ms_peer0"].get(stage), ".1f") for stage in STAGES)
        lines.append(f"| {r['process_size']} | {r['scenario']} | {r['peers']} | {r['fps_per_peer']:.1f} | {r['sent_fps_per_peer']:.1f} | "
                     f"{_fmt(r['latency_ms_median'], '.0f')} | {_fmt(r['latency_ms_p95'], '.0f')} | {r['dropped_ratio']:.1%} | "
                     f"{_fmt(r.get('lens_fps_per_peer'), '.1f')} | {_fmt(r['server_ms_peer0'].get('lens'), '.0f')} | {stages} |")
    publish(args, prog, argv or [], lines, {"device": health["device"], "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
