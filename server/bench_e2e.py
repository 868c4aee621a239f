"""End-to-end benchmark: real aiortc clients against a real ``stylecam serve`` process.

Each client sends a synthetic 640x480 camera at 30 fps with a frame counter drawn into the
top row as black/white blocks (two reference blocks first, so styling that changes
colours or inverts them still decodes; a checksum rejects misreads). Glass-to-glass
latency runs from the moment the client's camera handed a frame to its encoder to the
moment the styled frame came out of the client's decoder. A strong style scrambles the
drawn counter, so it is read during a pass-through warm-up to learn the fixed offset
between sent and received RTP timestamps (the server keeps each frame's pts); after that
every returned frame is matched by its pts, and frames whose counter still reads check
that the match agrees.

Reports, per scenario (1, 2, 4 peers x style only / style + saliency): received fps per
peer, median and p95 latency, dropped ratio (sent frames never seen back). Prints a table
and writes JSON. Not a test: it needs a style model (``--models``, default models/zoo).

``Client`` and ``CounterCamera`` are also what the server tests drive the server with.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

USER_ERRORS = (OSError, RuntimeError)
WIDTH, HEIGHT = 640, 480
BLOCK = 32  # code block side, pixels
BITS = 14  # counter bits; 20 blocks = 2 references + 14 bits + 4 checksum bits
TIME_BASE = fractions.Fraction(1, 90000)


def _checksum(counter: int) -> int:
    return (counter * 7 + 3) % 16


def draw_counter(image: np.ndarray, counter: int) -> None:
    """Draw ``counter`` (mod 2**14) as the top row of 32 px blocks, in place."""
    value = counter % (1 << BITS)
    bits = [1, 0] + [(value >> i) & 1 for i in range(BITS)] + [(_checksum(value) >> i) & 1 for i in range(4)]
    for i, bit in enumerate(bits):
        image[:BLOCK, i * BLOCK : (i + 1) * BLOCK] = 255 if bit else 0


def read_counter(image: np.ndarray) -> int | None:
    """The counter drawn by ``draw_counter``, or None when it cannot be read reliably."""
    inner = image[8 : BLOCK - 8].astype(np.float32).mean(axis=2)
    levels = [float(inner[:, i * BLOCK + 8 : (i + 1) * BLOCK - 8].mean()) for i in range(2 + BITS + 4)]
    white, black = levels[0], levels[1]
    if abs(white - black) < 40:
        return None
    mid = (white + black) / 2
    bits = [(level > mid) == (white > mid) for level in levels[2:]]
    value = sum(int(b) << i for i, b in enumerate(bits[:BITS]))
    check = sum(int(b) << i for i, b in enumerate(bits[BITS:]))
    return value if check == _checksum(value) else None


def scene(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A colourful still test scene: gradients and a few shapes, RGB uint8."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([255 * x / width, 255 * y / height, 255 * (1 - x / width) * 0.5 + 64 * np.sin(y / 17) + 64], axis=2)
    image[height // 3 : height // 3 + 120, width // 4 : width // 4 + 160] = (240, 200, 40)
    image[(x - 0.7 * width) ** 2 + (y - 0.6 * height) ** 2 < 70**2] = (30, 90, 220)
    return np.clip(image, 0, 255).astype(np.uint8)


class CounterCamera(VideoStreamTrack):
    """A synthetic camera: the scene with a moving bar and the frame counter drawn in.
    Remembers when each counter was handed to the encoder."""

    def __init__(self, fps: float = 30.0, width: int = WIDTH, height: int = HEIGHT) -> None:
        super().__init__()
        self.fps = fps
        self._scene = scene(width, height)
        self._image = self._scene.copy()
        self.sent_at: dict[int, float] = {}  # pts -> when handed to the encoder
        self.pts_of: dict[int, int] = {}  # drawn counter -> pts of its latest frame
        self.count = 0
        self._start: float | None = None

    def sent_pts_near(self, pts: int) -> int:
        """The pts this camera gave the frame nearest ``pts`` (codecs round pts by a tick
        or two on the way through)."""
        step = 90000 / self.fps
        return int(round(round(pts / step) * step))

    def draw(self, count: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame number ``count`` as sent (into ``out`` when given)."""
        out = self._scene.copy() if out is None else out
        np.copyto(out, self._scene)
        bar = (count * 8) % out.shape[1]
        out[BLOCK:, bar : bar + 12] = 255
        draw_counter(out, count)
        return out

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.count / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame.from_ndarray(self.draw(self.count, self._image), format="rgb24")
        frame.pts, frame.time_base = int(round(self.count * 90000 / self.fps)), TIME_BASE
        self.sent_at[frame.pts] = time.monotonic()
        self.pts_of[self.count % (1 << BITS)] = frame.pts
        self.count += 1
        return frame


@dataclass
class Received:
    frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)  # sent pts seen back
    pts_offset: int | None = None  # received RTP pts - sent pts (mod 2**32), learnt from the counter
    pts_checks: int = 0  # frames whose counter was read after the offset was learnt...
    pts_agree: int = 0  # ... and whose pts matched it
    last: np.ndarray | None = None
    last_pts: int | None = None
    first_at: float | None = None
    last_at: float | None = None


class Client:
    """One WebRTC peer of the server: sends a CounterCamera, reads frames back, talks on
    the ``control`` channel."""

    def __init__(self, base_url: str, fps: float = 30.0, decode_every: int = 1) -> None:
        """``decode_every``: convert every n-th returned frame to RGB (``received.last``)
        and read its counter; every frame is converted until the pts offset is known."""
        self.base_url = base_url.rstrip("/")
        self.camera = CounterCamera(fps)
        self.received = Received()
        self.messages: list[dict] = []
        self.decode_every = decode_every
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("control")
        self.channel.on("message", lambda text: self.messages.append(json.loads(text)))
        self._open = asyncio.Event()
        self.channel.on("open", self._open.set)
        self._reader: asyncio.Task | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track) -> None:
        if track.kind == "video":
            self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track) -> None:
        r = self.received
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                r.frames += 1
                r.first_at = r.first_at or now
                r.last_at = now
                r.last_pts = frame.pts
                if r.pts_offset is None or r.frames % self.decode_every == 0:
                    r.last = frame.to_ndarray(format="rgb24")
                    self._check_counter(read_counter(r.last), frame.pts)
                if r.pts_offset is not None:
                    sent_pts = self.camera.sent_pts_near((frame.pts - r.pts_offset) % (1 << 32))
                    sent = self.camera.sent_at.get(sent_pts)
                    if sent is not None and sent_pts not in r.seen:
                        r.seen.add(sent_pts)
                        r.latencies_ms.append((now - sent) * 1000.0)
        except MediaStreamError:
            pass

    def _check_counter(self, counter: int | None, received_pts: int) -> None:
        r = self.received
        sent_pts = self.camera.pts_of.get(counter) if counter is not None else None
        if sent_pts is None:
            return
        offset = (received_pts - sent_pts) % (1 << 32)
        if r.pts_offset is None:
            r.pts_offset = offset
        else:
            r.pts_checks += 1
            r.pts_agree += self.camera.sent_pts_near((received_pts - r.pts_offset) % (1 << 32)) == sent_pts

    async def connect(self, timeout: float = 15.0) -> None:
        self.pc.addTrack(self.camera)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = json.dumps({"sdp": self.pc.localDescription.sdp, "type": "offer"}).encode()
        answer = await asyncio.get_running_loop().run_in_executor(None, _post_json, f"{self.base_url}/offer", body)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(self._open.wait(), timeout)

    def send(self, message: dict) -> None:
        self.channel.send(json.dumps(message))

    async def wait_frames(self, count: int, timeout: float = 15.0) -> np.ndarray:
        """Wait until ``count`` more frames have arrived; the newest, as RGB."""
        target = self.received.frames + count
        deadline = time.monotonic() + timeout
        while self.received.frames < target or self.received.last is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"got {self.received.frames} frames, wanted {target}")
            await asyncio.sleep(0.02)
        return self.received.last

    async def wait_message(self, kind: str, timeout: float = 5.0, since: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages[since:]:
                if message.get("type") == kind:
                    return message
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind!r} message in {timeout} s; got {self.messages[since:]}")
            await asyncio.sleep(0.02)

    def sent_of_last(self) -> np.ndarray | None:
        """The frame this client sent that ``received.last`` came back from (None until the
        pts offset is known)."""
        r = self.received
        if r.pts_offset is None or r.last_pts is None:
            return None
        sent_pts = self.camera.sent_pts_near((r.last_pts - r.pts_offset) % (1 << 32))
        return self.camera.draw(round(sent_pts * self.camera.fps / 90000))

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()


def _post_json(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


# -- the benchmark ----------------------------------------------------------------------
def start_server(models: Path, extra: list[str], timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """``stylecam serve`` on a free port; returns the process and its base URL."""
    cmd = [sys.executable, "-m", "server", "--port", "0", "--models", str(models), "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True, cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on " in line:
            return proc, line.split("listening on ")[1].strip().rstrip("/")
    proc.kill()
    raise RuntimeError(f"server did not start (exit code {proc.poll()}): {' '.join(cmd)}")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _scenario(url: str, peers: int, config: dict, seconds: float, fps: float) -> dict:
    clients = [Client(url, fps=fps, decode_every=10) for _ in range(peers)]
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        for c in clients:  # pass-through until each client has read its counter back
            c.send({"type": "config", "style": None, "saliency": "off"})
        deadline = time.monotonic() + 15
        while any(c.received.pts_offset is None for c in clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for c in clients:
            c.send({"type": "config", **config})
        await asyncio.sleep(3.0)  # warm-up: sessions open, saliency starts, rates settle
        starts = [(c.received.frames, c.camera.count, len(c.received.latencies_ms), len(c.received.seen)) for c in clients]
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        span = time.monotonic() - t0
        rows = []
        for c, (f0, s0, l0, n0) in zip(clients, starts):
            sent = c.camera.count - s0
            seen = len(c.received.seen) - n0
            stats = [m for m in c.messages if m.get("type") == "stats"]
            rows.append(
                {
                    "fps": (c.received.frames - f0) / span,
                    "latencies": c.received.latencies_ms[l0:],
                    "dropped_ratio": 1.0 - min(1.0, seen / sent) if sent else None,
                    "sent_fps": sent / span,
                    "server_ms": stats[-1]["ms"] if stats else {},
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
        "pts_checks_agree_of": [sum(r["pts_checks"][0] for r in rows), sum(r["pts_checks"][1] for r in rows)],
    }


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None, prog: str = "stylecam bench e2e") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", type=Path, default=Path(__file__).resolve().parent.parent / "models" / "zoo", help="model directory the server loads")
    p.add_argument("--url", default=None, help="bench a server already running here instead of starting one")
    p.add_argument("--peers", default="1,2,4", help="comma-separated peer counts")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per scenario (after 3 s warm-up)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate each client sends at")
    p.add_argument("--style", default=None, help="style model to use (default: the first the server lists)")
    p.add_argument("--saliency", default=None, help="saliency method for the style+saliency runs (default: the first loaded)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="--device for the started server")
    p.add_argument("--process-size", default="auto", metavar="auto|full|WxH", help="--process-size for the started server")
    p.add_argument("--json", type=Path, default=Path("bench-results/e2e.json"), help="where to write the results")
    args = p.parse_args(argv)

    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args.models, ["--device", args.device, "--max-peers", "8", "--process-size", args.process_size])
    try:
        models = get_json(f"{url}/api/models")["models"]
        health = get_json(f"{url}/api/health")
        styles = [m["name"] for m in models if m["kind"] in ("style", "multistyle")]
        methods = [m["method"] for m in models if m["kind"] == "saliency"]
        style = args.style or (styles[0] if styles else None)
        if style is None:
            raise RuntimeError(f"no style model under {args.models}; export one (stylecam export) or pass --models")
        method = args.saliency or (methods[0] if methods else None)
        configs = [("style", {"style": style, "saliency": "off"})]
        if method:
            configs.append((f"style+{method}", {"style": style, "saliency": method, "opacity": 0.4}))
        results = []
        for label, config in configs:
            for n in (int(x) for x in args.peers.split(",")):
                result = asyncio.run(_scenario(url, n, config, args.seconds, args.fps))
                result["scenario"] = label
                results.append(result)
                print(f"  done: {label} x{n} peers", file=sys.stderr, flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    header = f"{'scenario':<22}{'peers':>6}{'fps/peer':>10}{'sent':>7}{'lat p50':>9}{'lat p95':>9}{'dropped':>9}"
    print(f"device: {health['device']}  style: {style}  process size: {args.process_size}  "
          f"({args.seconds:.0f} s per row, {args.fps:.0f} fps sent, 640x480)")
    print(header)
    for r in results:
        print(
            f"{r['scenario']:<22}{r['peers']:>6}{r['fps_per_peer']:>10.1f}{r['sent_fps_per_peer']:>7.1f}"
            f"{_fmt(r['latency_ms_median'], '9.0f')}{_fmt(r['latency_ms_p95'], '9.0f')}{r['dropped_ratio']:>9.1%}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": health["device"], "style": style, "process_size": args.process_size,
                                     "results": results}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
