"""One browser (or any WebRTC client): its RTCPeerConnection, control channel, pipeline,
stats and its end.

A peer is closed, and everything it holds freed, when its connection fails or closes,
its video track ends, it goes silent for ``silence_timeout`` seconds, or it never
connects within ``connect_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable

from aiortc import MediaStreamTrack, RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from stylecam.server.config import IceServer
from stylecam.server.control import Catalog, ControlError, Settings, apply_config, parse_message
from stylecam.server.engine import Engine
from stylecam.server.track import NewestFrame, StyledTrack

log = logging.getLogger(__name__)
CONTROL_LABEL = "control"
LENS_MESSAGE_INTERVAL = 0.2  # seconds: lens results reach the page a few times a second at most


def rtc_configuration(ice_servers: tuple[IceServer, ...]) -> RTCConfiguration:
    """The configured STUN/TURN servers; without any, answers carry host candidates only (LAN, localhost)."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers])


class Peer:
    def __init__(self, engine: Engine, catalog: Catalog, silence_timeout: float, connect_timeout: float,
                 on_closed: Callable[[Peer], None], remote: str | None = None, ice_servers: tuple[IceServer, ...] = ()) -> None:
        self.id = secrets.token_hex(3)  # names the peer in logs
        self.remote = remote  # the client's address, for the per-address limit on pending offers
        self.engine = engine
        self.silence_timeout = silence_timeout
        self.connect_timeout = connect_timeout
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self.pipeline = engine.pipeline(Settings(style=catalog.default_style()),
                                        lambda message: self._from_worker(self._send, {"type": "error", "message": message}),
                                        lambda info: self._from_worker(self._send_lens, info))
        self._lens_sent_at = 0.0
        self.channel: RTCDataChannel | None = None
        self.source: NewestFrame | None = None
        self.track: StyledTrack | None = None
        self._drains: list[asyncio.Task] = []
        self._tasks: list[asyncio.Task] = []
        self._closing: asyncio.Task | None = None
        self.created_at = time.monotonic()
        self.connected_at: float | None = None

        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def catalog(self) -> Catalog:
        """What a control message may name now: learnt styles come and go while a peer streams."""
        return self.engine.registry.catalog()

    @property
    def pending(self) -> bool:
        """Offered and answered, but not connected (yet)."""
        return self.connected_at is None

    # -- setup --------------------------------------------------------------------------
    async def answer(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Apply the offer and return the answer (ICE candidates included). ValueError if
        the offer is unusable."""
        await self.pc.setRemoteDescription(offer)
        if self.track is None:
            raise ValueError("the offer has no video track; send the camera with addTrack or a sendrecv video transceiver")
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._tasks += [asyncio.create_task(self._watchdog()), asyncio.create_task(self._stats())]
        log.info("peer %s: answered", self.id)
        return self.pc.localDescription

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self.track is None:
            self.source = NewestFrame(track)
            self.track = StyledTrack(self.source, self.pipeline)
            self.pc.addTrack(self.track)
        else:  # audio or a second video track: read and discard so nothing queues up
            self._drains.append(asyncio.create_task(self._drain(track)))

    @staticmethod
    async def _drain(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != CONTROL_LABEL:
            channel.close()
            return
        self.channel = channel
        channel.on("message", self._on_message)

    def _on_message(self, text: str | bytes) -> None:
        try:
            data = parse_message(text)
            self.pipeline.update(apply_config(data, self.pipeline.settings, self.catalog))
        except ControlError as e:
            self._send({"type": "error", "message": str(e)})
        except Exception as e:  # never let a message escape into aiortc, which would drop the connection
            log.exception("peer %s: control message not handled", self.id)
            self._send({"type": "error", "message": f"control message not handled ({type(e).__name__}); settings unchanged"})

    def _send(self, message: dict) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(message))

    def _from_worker(self, send: Callable[[dict], None], message: dict) -> None:
        """Called in a worker thread: ``send(message)`` on the event loop, unless it has closed."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(send, message)

    def _send_lens(self, info: dict) -> None:
        now = time.monotonic()
        if now - self._lens_sent_at >= LENS_MESSAGE_INTERVAL:
            self._lens_sent_at = now
            self._send({"type": "lens", **info})

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        log.info("peer %s: connection %s", self.id, state)
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
        elif state in ("failed", "closed"):
            self.close()

    # -- running ------------------------------------------------------------------------
    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if self.connected_at is None:
                if now - self.created_at > self.connect_timeout:
                    log.info("peer %s: not connected after %.0f s; closing", self.id, self.connect_timeout)
                    break
                continue
            source = self.source
            last = source.last_frame_at if source and source.last_frame_at else self.connected_at
            if source is not None and source.ended:
                log.info("peer %s: video track ended; closing", self.id)
                break
            if now - last > self.silence_timeout:
                log.info("peer %s: no frames for %.1f s; closing", self.id, now - last)
                break
        self.close()

    async def _stats(self) -> None:
        last_in = last_out = last_lens = 0
        last_t = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            frames_in = self.source.frames_in if self.source else 0
            frames_out = self.track.frames_out if self.track else 0
            span = max(now - last_t, 1e-3)
            stats = self.pipeline.snapshot()
            self._send(
                {
                    "type": "stats",
                    "fps_in": round((frames_in - last_in) / span, 1),
                    "fps_out": round((frames_out - last_out) / span, 1),
                    "dropped": self.source.dropped if self.source else 0,
                    "ms": stats.ms,
                    "top5": stats.top5,
                    "style": stats.style,
                    "saliency": stats.saliency,
                    "lens": stats.lens,
                    "lens_fps": round((self.pipeline.lens_runs - last_lens) / span, 1),
                    "lens_info": stats.lens_info,
                }
            )
            last_in, last_out, last_lens, last_t = frames_in, frames_out, self.pipeline.lens_runs, now

    # -- the end ------------------------------------------------------------------------
    def close(self) -> asyncio.Task:
        """Close once (idempotent); returns the task doing it."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close())
        return self._closing

    async def _close(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks + self._drains:
            if task is not current:
                task.cancel()
        self.pipeline.close()
        if self.source is not None:
            self.source.stop()
        if self.track is not None:
            self.track.stop()
        try:
            await asyncio.wait_for(self.pc.close(), timeout=3.0)
        except (TimeoutError, Exception) as e:  # a stuck transport must not keep the peer
            log.warning("peer %s: close did not finish cleanly (%s)", self.id, type(e).__name__)
        log.info("peer %s: closed", self.id)
        self._on_closed(self)
