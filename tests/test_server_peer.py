"""One real aiortc client against the real app in this process (so a model can be made
slow): under overload the newest frame wins, latency stays bounded and drops are counted."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from conftest import in_process, run
from tiny_models import slow_down

from stylecam.server.config import ENGINE, ServerConfig
from stylecam.server.testing.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

CAMERA_FPS = 15
STYLE_SECONDS = 0.25  # the slow model: 4 frames a second against a 15 fps camera
# Newest frame wins: about 0.65 s here, the model's 0.25 s and as much again because
# aiortc's jitter buffer holds each frame until the next one starts. A queue of frames
# instead adds 0.7 s every second (p95 3.7 s over this test's window).
P95_LATENCY_MS = 1500


def test_overload_keeps_latency_bounded_and_counts_drops(tiny_zoo):
    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu", max_peers=1)) as (app, url):
            await overload(app, url)

    async def overload(app, url):
        slow = slow_down(app[ENGINE].registry, "invert", STYLE_SECONDS)
        client = Client(url, fps=CAMERA_FPS)
        try:
            await client.connect()
            client.send({"type": "config", "style": "invert"})  # inverts: the drawn counter still reads
            await client.wait_frames(3)
            assert client.received.pts_offset is not None
            start, runs = len(client.received.latencies_ms), slow.runs
            await asyncio.sleep(4.0)
            latencies = client.received.latencies_ms[start:]
            stats = [m for m in client.messages if m.get("type") == "stats"][-1]
            assert slow.runs - runs >= 10  # the slow model really ran all along (16 at most)
            assert len(latencies) >= 10
            p95 = float(np.percentile(latencies, 95))
            assert p95 < P95_LATENCY_MS, (p95, latencies)
            assert stats["dropped"] > 0.5 * client.camera.sent, stats  # 11 of every 15 frames in
            assert stats["fps_out"] <= 1 / STYLE_SECONDS + 1 and stats["fps_in"] >= 2 * stats["fps_out"], stats
            assert STYLE_SECONDS * 1000 <= stats["ms"]["style"] < STYLE_SECONDS * 1000 + 150, stats
        finally:
            await client.close()

    run(go(), timeout=40)


@pytest.mark.timeout(240)
def test_soak_four_peers_for_a_minute(tiny_zoo, tmp_path):
    """4 peers stream for 60 s with style and saliency on and their controls changing every
    few seconds: every peer streams all along, the server logs no traceback, its memory
    grows less than 10% over the last 20 s, and every peer is gone within 5 s of the clients
    closing. The first 40 s are warm-up: run for 100 s, the server's RSS rose from 305 to
    369 MB in the first 40 s (codecs, buffers and pools filling as each setting is first
    used) and then held at 369-370 MB, with onnxruntime's memory arena on or off alike.
    CI runs read +5.4% (387 -> 408 MB, 30 s warm-up) and +6.2% (428 -> 455 MB, 40 s) where
    this machine reads +0.4%, so the bound is 10%: 43 MB over the 10 s between the windows'
    centres, 72 kB for each of the ~60 frames a second the server sends; keeping one 320x240
    frame (230 kB) in three would still fail it."""
    import random
    import time

    from stylecam.server.testing.client import get_json, start_server

    def rss_kib(pid: int) -> int:
        status = open(f"/proc/{pid}/status").read()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))

    log = tmp_path / "server.log"
    proc, url = start_server(tiny_zoo, ["--device", "cpu", "--max-peers", "4"], log=log)
    rng = random.Random(3)
    configs = [{"style": "tint", "weights": {"red": rng.random(), "blue": rng.random()}, "saliency": rng.choice(["vanilla", "gradcam", "off"]),
                "strength": rng.random(), "opacity": rng.random()} for _ in range(40)]

    async def go() -> tuple[int, int, float, list[int]]:
        clients = [Client(url, fps=15, decode_every=15) for _ in range(4)]  # 4 senders and 4 receivers share the 2 cores with the server
        for c in clients:  # one at a time: --max-pending allows 2 unconnected offers per address
            await c.connect()
        started = time.monotonic()
        try:
            samples = []  # RSS every 0.5 s after the warm-up: it swings by tens of MB with the frames in flight
            while time.monotonic() - started < 60:
                for c in clients:
                    c.send({"type": "config", **configs[rng.randrange(len(configs))]})
                for _ in range(5):
                    if time.monotonic() - started >= 40:
                        samples.append(rss_kib(proc.pid))
                    await asyncio.sleep(0.5)
            before, after = (int(np.median(window)) for window in (samples[:20], samples[-20:]))  # first and last 10 s
            frames = [c.received.frames for c in clients]
        finally:
            await asyncio.gather(*(c.close() for c in clients))
        closed = time.monotonic()
        while get_json(url + "/api/health")["peers"]:
            assert time.monotonic() - closed < 5, "peers not gone within 5 s"
            await asyncio.sleep(0.1)
        return before, after, time.monotonic() - closed, frames

    try:
        before, after, gone, frames = run(go(), timeout=130)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"soak: RSS {before} -> {after} KiB ({(after - before) / before:+.1%}), peers gone in {gone:.2f} s, frames {frames}")
    assert min(frames) > 215  # every peer streamed all along (15 fps sent)
    assert after < 1.10 * before, f"RSS grew {(after - before) / before:+.1%} after the warm-up"
    assert "Traceback" not in log.read_text(), log.read_text()[-2000:]
