"""``stylecam bench gpu``: the GPU path, proven with numbers, on any machine with an NVIDIA GPU.

onnxruntime falls back to the CPU without a word when its CUDA provider cannot start (a
missing CUDA or cuDNN library, a wrong driver), so this first checks where the nodes of a
shipped graph really ran, from onnxruntime's own profile, and stops with one line if it
was not the GPU. Then it times, with IO binding as the server runs them:

- each style model of the zoo, fp32 and fp16 (the fp16 graph a CUDA server makes of a
  float32 one that ships without it, ``server/half.py``), at 640x480 and 1280x720;
- each saliency graph on a 640x480 frame;
- ``bench e2e``'s scenario with 1, 4 and 8 peers sending 1280x720, style + Grad-CAM and
  then style alone, each client in its own process on the same machine (``--peers``,
  ``--seconds`` to change it; ``--no-e2e`` skips it).

It prints one table and writes JSON. It needs ``onnxruntime-gpu`` (``pip install
stylecam[serve]`` on Linux x86-64 brings it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from stylecam.bench.report import add_output_flags, publish
from stylecam.server import half
from stylecam.server.help import HelpFormatter
from stylecam.server.model_card import DEFAULT_ZOO, CardError, ModelCard, iter_cards, load_card_for_onnx
from stylecam.server.ort_model import DeviceError, OrtModel, cuda_device_name, providers_for
from stylecam.server.registry import same_model
from stylecam.server.runner import SaliencyRunner, StyleRunner
from stylecam.server.style_kinds import STYLE_KINDS

SIZES = ((640, 480), (1280, 720))
CLIENT_START_S = 8.0  # for the client processes to start and connect, before the shared warm-up
MIN_CUDA_SHARE = 0.5  # of a graph's compute nodes; the rest may be shape ops onnxruntime keeps on the CPU


class GpuError(RuntimeError):
    """No usable CUDA path; the message says what is missing."""


USER_ERRORS = (GpuError, CardError, DeviceError, OSError)


def placement(profile: Path) -> Counter:
    """Nodes per execution provider in an onnxruntime profile (``enable_profiling``)."""
    events = json.loads(Path(profile).read_text())
    return Counter(e["args"]["provider"] for e in events
                   if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and "provider" in e.get("args", {}))


def cuda_share(counts: Counter) -> float:
    total = sum(counts.values())
    return counts.get("CUDAExecutionProvider", 0) / total if total else 0.0


def check_cuda(model: Path) -> dict:
    """Run one shipped graph on CUDA with profiling on; GpuError unless most of its nodes
    really ran there."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise GpuError(f"this onnxruntime ({ort.__version__}) has no CUDA provider: pip install onnxruntime-gpu")
    providers = providers_for("cuda")  # DeviceError when the driver sees no GPU
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(str(model), options, providers=providers)
        runner = StyleRunner(OrtModel(load_card_for_onnx(model), session, model))  # the card's feeds, this one session
        runner(np.zeros((480, 640, 3), np.uint8))
        counts = placement(Path(session.end_profiling()))
    share = cuda_share(counts)
    if session.get_providers()[0] != "CUDAExecutionProvider" or share < MIN_CUDA_SHARE:
        raise GpuError(f"onnxruntime fell back to the CPU: {dict(counts)} nodes per provider for {model.name} "
                       "(check the CUDA and cuDNN libraries onnxruntime-gpu needs)")
    return {"model": model.name, "nodes": dict(counts), "cuda_share": share, "onnxruntime": ort.__version__, "gpu": cuda_device_name()}


def median_ms(run, repeats: int) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def time_style(path: Path, size: tuple[int, int], repeats: int) -> float:
    runner = StyleRunner(OrtModel.load(path, "cuda"))
    frame = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = np.empty_like(frame)
    binding = runner.model.binding()
    style = runner.style()
    return median_ms(lambda: runner.run_into(binding, out, frame, style), repeats)


def time_saliency(path: Path, repeats: int) -> float:
    runner = SaliencyRunner(OrtModel.load(path, "cuda"))
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return median_ms(lambda: runner(frame), repeats)


def _one_client(url: str, config: dict, seconds: float, warmup: float, start_at: float) -> dict:
    from stylecam.bench.e2e import _scenario  # aiortc and PyAV: only the end-to-end rows need them

    return asyncio.run(_scenario(url, 1, config, seconds, 30.0, warmup, size=SIZES[1], start_at=start_at))


def _pooled(results: list[dict]) -> dict:
    """One row from one-peer results measured over the same seconds; p95 is the worst peer's."""
    return {"peers": len(results), "config": results[0]["config"],
            "fps_per_peer": statistics.mean(r["fps_per_peer"] for r in results),
            "latency_ms_p95": max((r["latency_ms_p95"] for r in results if r["latency_ms_p95"] is not None), default=None),
            "dropped_ratio": statistics.mean(r["dropped_ratio"] for r in results),
            "server_ms_peer0": results[0]["server_ms_peer0"]}


def udp_receive_errors(snmp: Path = Path("/proc/net/snmp")) -> int | None:
    """Datagrams the kernel dropped for full socket buffers (Linux, all sockets); video
    over loopback loses packets here when a receiver falls behind. None off Linux."""
    try:
        header, values = [line.split() for line in snmp.read_text().splitlines() if line.startswith("Udp:")][:2]
    except (OSError, ValueError):
        return None
    return int(dict(zip(header, values)).get("RcvbufErrors", 0))


def e2e(models: Path, peers: list[int], seconds: float, warmup: float) -> list[dict]:
    """Each client in its own process, as each browser is; every peer count with style +
    Grad-CAM, then with style alone, which shows what the saliency overlay costs."""
    from stylecam.server.testing.client import get_json, start_server

    proc, url = start_server(models, ["--device", "cuda", "--process-size", "full", "--max-peers", str(2 * max(peers)),
                                      "--max-pending", str(2 * max(peers))])  # room while the last row's peers close
    try:
        listed = get_json(f"{url}/api/models")["models"]
        style = next(m["name"] for m in listed if m.get("stylizes"))
        rows = []
        for config in ({"style": style, "saliency": "gradcam", "opacity": 0.4}, {"style": style, "saliency": "off"}):
            for n in peers:
                start_at = time.monotonic() + CLIENT_START_S + warmup
                errors = udp_receive_errors()
                with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
                    row = _pooled(list(pool.map(_one_client, *zip(*[(url, config, seconds, warmup, start_at)] * n))))
                after = udp_receive_errors()
                rows.append({**row, "udp_receive_errors": None if errors is None or after is None else after - errors})
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fp16_twins(styles: list[tuple[Path, ModelCard]], device: str = "cuda") -> list[tuple[Path, ModelCard]]:
    """The fp16 graphs a CUDA server makes of the float32 ones that ship without one (``half``),
    made (or taken from the cache) here, so the table has the graph the server runs."""
    shipped = {same_model(card) for _, card in styles if card.precision == "fp16"}
    twins = [half.half_of(card, path, device) for path, card in styles if card.precision == "fp32" and same_model(card) not in shipped]
    return [(path, card) for card, path in twins if card.precision == "fp16"]


def main(argv: list[str], prog: str = "stylecam bench gpu") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--models", type=Path, default=DEFAULT_ZOO, help="the zoo to measure (default: the shipped one)")
    p.add_argument("--repeats", type=int, default=50, help="timed runs per graph and size (after 3 warm-up runs)")
    p.add_argument("--peers", default="1,4,8", help="comma-separated peer counts for the end-to-end rows")
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per end-to-end row")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds per end-to-end row before measuring, while sessions open and rates settle")
    p.add_argument("--no-e2e", action="store_true", help="graphs only: skip the end-to-end rows")
    add_output_flags(p, "gpu")
    args = p.parse_args(argv)
    cards = [(path.parent / card.onnx, card) for path, card in iter_cards(args.models)]
    styles = [(path, card) for path, card in cards if card.kind in STYLE_KINDS and card.precision in ("fp32", "fp16")]
    saliency = [(path, card) for path, card in cards if card.kind == "saliency"]
    if not styles:
        raise GpuError(f"no fp32 or fp16 style models under {args.models}")
    fp32 = [path for path, card in styles if card.precision == "fp32"]
    check = check_cuda((fp32 or [styles[0][0]])[0])
    styles += fp16_twins(styles)
    rows = []
    for path, card in styles:
        for size in SIZES:
            rows.append({"what": f"{card.name} ({card.precision})", "size": f"{size[0]}x{size[1]}",
                         "ms": time_style(path, size, args.repeats)})
    for path, card in saliency:
        rows.append({"what": f"{card.name} ({card.precision})", "size": "640x480", "ms": time_saliency(path, args.repeats)})
    for r in (e2e(args.models, [int(n) for n in args.peers.split(",")], args.seconds, args.warmup) if not args.no_e2e else []):
        what = f"e2e {r['peers']} peers, {r['config']['style']}" + (" + Grad-CAM" if r["config"]["saliency"] == "gradcam" else " alone")
        rows.append({"what": what, "size": "1280x720", **{k: r[k] for k in ("fps_per_peer", "latency_ms_p95", "dropped_ratio",
                                                                          "server_ms_peer0", "udp_receive_errors")}})
    lines = [f"GPU: {check['gpu']}; CUDA check: {check['cuda_share']:.0%} of {check['model']}'s nodes ran on CUDA (onnxruntime {check['onnxruntime']})",
             "| what | size | ms per frame | fps per peer | p95 latency | dropped | UDP drops |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ms = f"{r['ms']:.2f}" if "ms" in r else ""
        fps = f"{r['fps_per_peer']:.1f}" if "fps_per_peer" in r else ""
        p95 = f"{r['latency_ms_p95']:.0f} ms" if r.get("latency_ms_p95") is not None else ""
        dropped = f"{r['dropped_ratio']:.1%}" if r.get("dropped_ratio") is not None else ""
        udp = "" if r.get("udp_receive_errors") is None else str(r["udp_receive_errors"])
        lines.append(f"| {r['what']} | {r['size']} | {ms} | {fps} | {p95} | {dropped} | {udp} |")
    publish(args, prog, argv, lines, {"check": check, "rows": rows})
    return 0
