"""Encode once, send to many: one H.264 encode per published stream, shared by its viewers.

aiortc's sender encodes every frame itself, once per peer, unless its track hands it
already-encoded ``av.Packet``s, which it only splits into RTP payloads (as
``MediaPlayer(decode=False)`` does). ``SharedEncoder`` pulls the stream's newest styled
frame, encodes it with libx264 in a worker thread, and gives the same packet to every
viewer's ``EncodedTrack``. Nothing is styled or encoded while nobody watches.

H.264 frames depend on the ones before them, so a viewer cannot skip to the newest
packet as the styling path skips to the newest frame: each viewer gets every packet from
a keyframe on. A viewer that falls ``MAX_BEHIND`` packets behind drops what it holds and
waits for the next keyframe, which it asks for; a new viewer and a viewer's PLI ask for
one too, and there is one every ``GOP_FRAMES`` frames regardless.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import cast

import av
from aiortc import MediaStreamTrack, RTCRtpCodecCapability, RTCRtpSender
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError
from av.video.frame import PictureType

log = logging.getLogger(__name__)

FPS = 30  # the rate the encoder's rate control assumes; frames may come slower
GOP_FRAMES = 2 * FPS  # a keyframe at least every 2 s: late joiners and lost packets recover
BITS_PER_PIXEL = 0.1  # per frame at FPS: 0.9 Mb/s at 640x480, 6.2 Mb/s at 1920x1080
MIN_BITRATE, MAX_BITRATE = 500_000, 8_000_000
MAX_BEHIND = 8  # packets a viewer may hold before it resynchronises on a keyframe


def h264_codecs() -> list[RTCRtpCodecCapability]:
    """The sender's H.264 codecs (and RTX): a viewer's transceiver must send what the encoder makes."""
    return [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() in ("video/h264", "video/rtx")]


def _open_h264(width: int, height: int) -> av.VideoCodecContext:
    """Baseline profile, no B-frames, no lookahead: each frame comes out as one packet at once."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.bit_rate = int(max(MIN_BITRATE, min(MAX_BITRATE, width * height * FPS * BITS_PER_PIXEL)))
    codec.gop_size = GOP_FRAMES
    codec.profile = "Baseline"
    codec.options = {"preset": "veryfast", "tune": "zerolatency"}
    return codec


class SharedEncoder:
    """Pulls frames from ``source`` while anyone watches, encodes each once (libx264, in a
    worker thread) and hands the packet to every subscribed ``EncodedTrack``."""

    def __init__(self, source: MediaStreamTrack) -> None:
        self._source = source
        self._viewers: set[EncodedTrack] = set()
        self._watched = asyncio.Event()
        self._keyframe = False
        self._codec: av.VideoCodecContext | None = None
        self._count = 0
        self.frames = 0  # frames encoded
        self.bytes = 0
        self.ms = 0.0  # encode time per frame, moving average
        self.ended = False
        self._task = asyncio.create_task(self._run())

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def subscribe(self) -> EncodedTrack:
        """A new viewer's track; it starts at the next keyframe, asked for now."""
        track = EncodedTrack(self, self._unsubscribe)
        self._viewers.add(track)
        self._watched.set()
        self.request_keyframe()
        return track

    def _unsubscribe(self, track: EncodedTrack) -> None:
        self._viewers.discard(track)
        if not self._viewers:
            self._watched.clear()

    def request_keyframe(self) -> None:
        """Make the next frame a keyframe (requests before it collapse into one)."""
        self._keyframe = True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._watched.wait()
                frame = cast(av.VideoFrame, await self._source.recv())  # a video track's frames
                keyframe, self._keyframe = self._keyframe, False
                packets = await loop.run_in_executor(None, self._encode, frame, keyframe)
                for packet in packets:
                    self.bytes += packet.size
                    for viewer in list(self._viewers):
                        viewer.put(packet)
        except MediaStreamError:
            pass
        except Exception:  # a failed encode ends this stream's egress, never the server
            log.exception("shared encoder failed; the stream's viewers end")
        finally:
            self.ended = True
            for viewer in list(self._viewers):
                viewer.end()

    def _encode(self, frame: av.VideoFrame, keyframe: bool) -> list[av.Packet]:
        """Worker thread: one frame in, its packet out, stamped with the frame's own pts
        and time base (the publisher's RTP clock), which the sender turns into RTP time. PyAV
        converts the frame to the encoder's format and even size; a new size opens a new
        encoder, whose first packet is a keyframe."""
        start = time.perf_counter()
        pts, time_base = frame.pts, frame.time_base or VIDEO_TIME_BASE
        width, height = frame.width // 2 * 2, frame.height // 2 * 2  # 4:2:0 needs even sides
        codec = self._codec
        if codec is None or (codec.width, codec.height) != (width, height):
            codec = self._codec = _open_h264(width, height)
        frame.pts, frame.time_base = self._count, codec.time_base
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        self._count += 1
        packets = codec.encode(frame)
        for packet in packets:
            packet.pts, packet.dts, packet.time_base = pts, pts, time_base
        ms = (time.perf_counter() - start) * 1000.0
        self.ms = ms if not self.frames else 0.8 * self.ms + 0.2 * ms
        self.frames += 1
        return packets

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class EncodedTrack(MediaStreamTrack):
    """One viewer's video track: the shared encoder's packets, from a keyframe on."""

    kind = "video"

    def __init__(self, encoder: SharedEncoder, on_stop: Callable[[EncodedTrack], None]) -> None:
        super().__init__()
        self._encoder = encoder
        self._on_stop = on_stop
        self._queue: deque[av.Packet] = deque()
        self._ready = asyncio.Event()
        self._synced = False  # a keyframe has been queued since the last resynchronisation
        self._ended = False
        self.resyncs = 0

    def put(self, packet: av.Packet) -> None:
        if self._synced and len(self._queue) >= MAX_BEHIND:
            self._queue.clear()
            self._synced = False
            self.resyncs += 1
            self._encoder.request_keyframe()
        if not self._synced and not packet.is_keyframe:
            return
        self._synced = True
        self._queue.append(packet)
        self._ready.set()

    def end(self) -> None:
        self._ended = True
        self._ready.set()

    async def recv(self) -> av.Packet:  # type: ignore[override]  # aiortc sends Packets as they are
        while not self._queue:
            if self._ended:  # the source ended, or stop()
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._on_stop(self)
        self.end()
