"""A WebRTC peer of ``stylecam serve`` for tests and benchmarks: a synthetic camera that
draws a frame counter, and a client that sends it, reads frames back and talks on the
``control`` channel.

The counter is drawn into the top row as black/white blocks (two reference blocks first,
so styling that changes colours or inverts them still decodes; a checksum rejects
misreads). A strong style scrambles it, so it is read during a pass-through warm-up to
learn the fixed offset between sent and received RTP timestamps (the server keeps each
frame's pts); after that every returned frame is matched by its pts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

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
    """The counter drawn by ``draw_counter``, or None when it cannot be read reliably (or
    the frame is too small to hold it: 640 px wide)."""
    if image.shape[0] < BLOCK or image.shape[1] < (2 + BITS + 4) * BLOCK:
        return None
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
    Remembers when each counter was handed to the encoder. Like a real camera it skips the
    frames whose time has passed while nobody read, rather than sending them late in a
    burst: a burst would read as more than ``fps`` frames a second downstream."""

    def __init__(self, fps: float = 30.0, width: int = WIDTH, height: int = HEIGHT) -> None:
        super().__init__()
        self.fps = fps
        self._scene = scene(width, height)
        self._image = self._scene.copy()
        self.sent_at: dict[int, float] = {}  # pts -> when handed to the encoder
        self.pts_of: dict[int, int] = {}  # drawn counter -> pts of its latest frame
        self.count = 0  # the next frame's slot: frames since the first, skipped ones included
        self.sent = 0  # frames handed to the encoder
        self._began: float | None = None

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
        if self._began is None:
            self._began = time.monotonic()
        due = self._began + self.count / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1 / self.fps:
            self.count = int((time.monotonic() - self._began) * self.fps)
        frame = av.VideoFrame.from_ndarray(self.draw(self.count, self._image), format="rgb24")
        frame.pts, frame.time_base = int(round(self.count * 90000 / self.fps)), TIME_BASE
        self.sent_at[frame.pts] = time.monotonic()
        self.pts_of[self.count % (1 << BITS)] = frame.pts
        self.count += 1
        self.sent += 1
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

    def __init__(self, base_url: str, fps: float = 30.0, decode_every: int = 1, size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
        """``decode_every``: convert every n-th returned frame to RGB (``received.last``)
        and read its counter; every frame is converted until the pts offset is known."""
        self.base_url = base_url.rstrip("/")
        self.camera = CounterCamera(fps, *size)
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

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        r = self.received
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.VideoFrame) or frame.pts is None:
                    continue
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
class ServerStartError(Exception):
    """The server process exited or never said where it listens: a bad flag, a port in use."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds right now (the OS picks it), for a
    process the caller starts next."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: Path, extra: list[str], timeout: float = 60.0, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """``stylecam serve`` on a free port; returns the process and its base URL. Its log goes
    to ``log`` when given, else to this process's stderr."""
    cmd = [sys.executable, "-m", "stylecam.server", "--port", "0", "--models", str(models), "--log-level", "warning", *extra]
    with open(log, "w") if log else contextlib.nullcontext() as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            break
        if "listening on " in line:
            return proc, line.split("listening on ")[1].strip().rstrip("/")
    proc.kill()
    raise ServerStartError(f"server did not start (exit code {proc.poll()}): {' '.join(cmd)}")


@contextlib.contextmanager
def serving(models: Path, extra: list[str]) -> Iterator[str]:
    """``start_server`` for the length of a ``with`` block; yields the base URL."""
    proc, url = start_server(models, extra)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
