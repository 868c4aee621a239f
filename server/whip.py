"""WHIP in, WHEP out: publish a stream from OBS (or any WHIP client), watch it styled.

    POST   /whip?style=&weights=&strength=&saliency=&opacity=   SDP offer -> 201, SDP answer, Location /whip/ID
    GET    /whip               the streams being published (JSON): how a viewer finds an ID
    GET    /whip/ID            the stream's settings and counters (JSON)
    POST   /whip/ID/control    {"type": "config", ...}: the page's control message
    DELETE /whip/ID            ends the stream and its viewers
    POST   /whep/ID            SDP offer -> 201, SDP answer, Location /whep/ID/VIEWER
    DELETE /whep/ID/VIEWER     ends that viewer

The publisher is a ``Peer`` like the page's (same pipeline, watchdog and peer cap); what
it styles is encoded once and fanned out to its viewers (``fanout``). Errors are JSON
``{"error": "..."}`` as at /offer: 400 bad offer or setting, 404 unknown resource,
415 wrong content type, 503 over the peer or viewer cap. WHIP and WHEP clients run in
other origins (browser players), so these routes answer CORS preflights, and they need
the server's token when it has one (OBS: the "Bearer Token" field).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from stylecam.server.config import CONFIG, ENGINE, PEERS, ServerConfig
from stylecam.server.control import Catalog, ControlError, Settings, apply_config, parse_message, weight_items
from stylecam.server.fanout import SharedEncoder, h264_codecs
from stylecam.server.peer import Peer, rtc_configuration
from stylecam.server.sdp import offer_problem, why_refused

log = logging.getLogger(__name__)

SDP = "application/sdp"
MAX_VIEWERS = 32  # per stream; each costs packetising and encryption, not an encode
PREFIXES = ("/whip", "/whep")
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Location",
}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _read_offer(request: web.Request, video: tuple[str, ...], want: str) -> str | web.Response:
    """The SDP offer in the body, or the error answer: 415, 413, or 400 saying what
    ``sdp.offer_problem`` found (``video``, ``want``: as it takes them)."""
    if request.content_type != SDP:
        return _error(415, f"send the offer as {SDP}, not {request.content_type or 'no Content-Type'}")
    try:
        offer = await request.text()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"offer is over the {request.app[CONFIG].max_offer_bytes}-byte limit")
    problem = offer_problem(offer, video, want)
    return _error(400, f"cannot use this offer: {problem}") if problem else offer


def _answer(sdp: str, location: str) -> web.Response:
    return web.Response(status=201, text=sdp, content_type=SDP, headers={"Location": location})


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ControlError(f"{name} must be a number from 0 to 1, got {text!r}") from None


def settings_from_query(query: dict[str, str], catalog: Catalog) -> Settings:
    """The publisher's starting settings from ``?style=&weights=a=0.7,b=0.3&strength=&saliency=&opacity=``
    (style ``none``: no styling); ControlError names a bad one."""
    unknown = sorted(set(query) - {"style", "weights", "strength", "saliency", "opacity", "token"})
    if unknown:
        raise ControlError(f"unknown query parameter(s) {', '.join(unknown)}; valid: style, weights, strength, saliency, opacity")
    data: dict[str, Any] = {key: _number(key, query[key]) for key in ("strength", "opacity") if key in query}
    if "style" in query:
        data["style"] = None if query["style"] in ("", "none") else query["style"]
    if "saliency" in query:
        data["saliency"] = query["saliency"]
    if "weights" in query:
        try:
            pairs = weight_items(query["weights"])
        except ValueError:
            raise ControlError(f"weights must read STYLE=W,STYLE=W (W from 0 to 1), got {query['weights']!r}") from None
        data["weights"] = {name: _number(f"the weight of {name}", value) for name, value in pairs}
    return apply_config(data, Settings(style=catalog.default_style()), catalog)


class Viewer:
    """One WHEP viewer: a send-only peer connection carrying the stream's shared packets."""

    def __init__(self, encoder: SharedEncoder, config: ServerConfig, on_closed: Callable[[Viewer], None]) -> None:
        self.id = secrets.token_urlsafe(9)
        self._on_closed = on_closed
        self.pc = RTCPeerConnection(rtc_configuration(config.ice_servers))
        self.track = encoder.subscribe()
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        transceiver.setCodecPreferences(h264_codecs())
        # a PLI or FIR from this viewer asks the shared encoder, not the sender's own
        # (unused) one, for a keyframe; aiortc has no public hook for it
        setattr(transceiver.sender, "_send_keyframe", encoder.request_keyframe)  # noqa: B010 (a private method, replaced)
        self._connect_timeout = config.connect_timeout
        self._closing: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._watchdog = asyncio.create_task(self._close_unless_connected())
        return self.pc.localDescription.sdp

    async def _close_unless_connected(self) -> None:
        await asyncio.sleep(self._connect_timeout)
        if self.pc.connectionState != "connected":
            log.info("whep viewer %s: not connected after %.0f s; closing", self.id, self._connect_timeout)
            self.close()

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.close()

    def close(self) -> asyncio.Task:
        """Close once (idempotent); returns the task doing it."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close())
        return self._closing

    async def _close(self) -> None:
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        self.track.stop()
        try:
            await asyncio.wait_for(self.pc.close(), timeout=3.0)
        except Exception as e:  # a stuck (TimeoutError) or broken transport must not keep the viewer
            log.warning("whep viewer %s: close did not finish cleanly (%s)", self.id, type(e).__name__)
        self._on_closed(self)


class Stream:
    """One WHIP publisher (a ``Peer``), its shared encoder and its viewers."""

    def __init__(self, peer: Peer, on_closed: Callable[[Stream], None]) -> None:
        self.id = secrets.token_urlsafe(9)  # the URL is the capability to watch: not guessable
        self.peer = peer
        self.encoder: SharedEncoder | None = None  # once the offer's video track is known
        self.viewers: dict[str, Viewer] = {}
        self._on_closed = on_closed
        self._closing: asyncio.Task | None = None

    def start(self) -> None:
        assert self.peer.track is not None, "start() after the offer was answered"
        self.encoder = SharedEncoder(self.peer.track)

    def describe(self) -> dict[str, Any]:
        peer, stats = self.peer, self.peer.pipeline.snapshot()
        settings = peer.pipeline.settings
        return {
            "id": self.id,
            "connected": not peer.pending,
            "settings": {**dataclasses.asdict(settings), "weights": dict(settings.weights)},
            "viewers": len(self.viewers),
            "frames_in": peer.source.frames_in if peer.source else 0,
            "dropped": peer.source.dropped if peer.source else 0,
            "frames_styled": peer.track.frames_out if peer.track else 0,
            "frames_encoded": self.encoder.frames if self.encoder else 0,
            "bytes_encoded": self.encoder.bytes if self.encoder else 0,
            "ms": {**stats.ms, **({"h264": round(self.encoder.ms, 1)} if self.encoder and self.encoder.frames else {})},
            "top5": stats.top5,
        }

    def close(self) -> asyncio.Task:
        """Close once (idempotent): the publisher, the encoder, every viewer."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close())
        return self._closing

    async def _close(self) -> None:
        await asyncio.gather(self.peer.close(), *(v.close() for v in list(self.viewers.values())), return_exceptions=True)
        if self.encoder is not None:
            await self.encoder.close()
        log.info("whip stream %s: closed", self.id)
        self._on_closed(self)


STREAMS = web.AppKey("whip_streams", dict)


def _stream(request: web.Request) -> Stream | web.Response:
    stream = request.app[STREAMS].get(request.match_info["stream"])
    if stream is None:
        return _error(404, f"no stream {request.match_info['stream']!r} is being published here (it ended, or the URL is wrong)")
    return stream


async def publish(request: web.Request) -> web.Response:
    offer = await _read_offer(request, ("sendonly", "sendrecv"), "the offer sends no video; publish a video track")
    if isinstance(offer, web.Response):
        return offer
    app = request.app
    peers, config, engine, streams = app[PEERS], app[CONFIG], app[ENGINE], app[STREAMS]
    catalog = engine.registry.catalog()
    try:
        settings = settings_from_query(dict(request.query), catalog)
    except ControlError as e:
        return _error(400, str(e))
    if len(peers) >= config.max_peers:
        return _error(503, f"server is full ({config.max_peers} peers, --max-peers); try again later")

    def publisher_closed(peer: Peer) -> None:
        peers.discard(peer)
        stream.close()

    peer = Peer(engine, catalog, config.silence_timeout, config.connect_timeout, publisher_closed, request.remote, config.ice_servers)
    peer.pipeline.update(settings)
    stream = Stream(peer, lambda s: streams.pop(s.id, None))
    peers.add(peer)
    streams[stream.id] = stream
    try:
        answer = await peer.answer(RTCSessionDescription(sdp=offer, type="offer"))
    except Exception as e:  # aiortc raises ValueError and others for SDP it cannot use
        await stream.close()
        log.info("rejected whip offer: %s: %s", type(e).__name__, e)
        return _error(400, f"cannot use this offer: {why_refused(e)}")
    stream.start()
    log.info("whip stream %s: publishing (peer %s)", stream.id, peer.id)
    return _answer(answer.sdp, f"/whip/{stream.id}")


async def listing(request: web.Request) -> web.Response:
    return web.json_response({"streams": [s.describe() for s in request.app[STREAMS].values()]})


async def describe(request: web.Request) -> web.Response:
    stream = _stream(request)
    return stream if isinstance(stream, web.Response) else web.json_response(stream.describe())


async def control(request: web.Request) -> web.Response:
    """The page's control message over HTTP; a bad one is a 400 and the stream goes on unchanged."""
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    pipeline = stream.peer.pipeline
    try:
        pipeline.update(apply_config(parse_message(await request.text()), pipeline.settings, stream.peer.catalog))
    except ControlError as e:
        return _error(400, str(e))
    return web.json_response(stream.describe()["settings"])


async def unpublish(request: web.Request) -> web.Response:
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    await stream.close()
    return web.Response(status=200)


async def watch(request: web.Request) -> web.Response:
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    offer = await _read_offer(request, ("recvonly", "sendrecv"), "the offer receives no video; add a recvonly video transceiver")
    if isinstance(offer, web.Response):
        return offer
    if stream.encoder is None or stream.encoder.ended:
        return _error(404, f"stream {stream.id!r} has ended")
    if len(stream.viewers) >= MAX_VIEWERS:
        return _error(503, f"stream {stream.id!r} has {MAX_VIEWERS} viewers, the most it takes; try again later")
    def forget(viewer: Viewer) -> None:
        stream.viewers.pop(viewer.id, None)

    viewer = Viewer(stream.encoder, request.app[CONFIG], forget)
    stream.viewers[viewer.id] = viewer
    try:
        answer = await viewer.answer(offer)
    except Exception as e:  # no H.264 in the offer, among others
        await viewer.close()
        log.info("rejected whep offer: %s: %s", type(e).__name__, e)
        return _error(400, f"cannot use this offer: {e} (the stream is sent as H.264; offer H.264 packetization-mode 1)")
    log.info("whip stream %s: viewer %s joined (%d watching)", stream.id, viewer.id, len(stream.viewers))
    return _answer(answer, f"/whep/{stream.id}/{viewer.id}")


async def leave(request: web.Request) -> web.Response:
    stream = _stream(request)
    if isinstance(stream, web.Response):
        return stream
    viewer = stream.viewers.get(request.match_info["viewer"])
    if viewer is None:
        return _error(404, f"stream {stream.id!r} has no viewer {request.match_info['viewer']!r}")
    await viewer.close()
    return web.Response(status=200)


@web.middleware
async def edge(request: web.Request, handler: Callable) -> web.StreamResponse:
    """CORS for browser WHIP/WHEP clients: preflights pass (they carry no token) and every
    answer on these routes, a 401 from ``signaling.require_token`` within included, is readable."""
    if not request.path.startswith(PREFIXES):
        return await handler(request)
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS)
    response = await handler(request)
    response.headers.update(CORS)
    return response


async def streams_context(app: web.Application) -> AsyncIterator[None]:
    """Holds the published streams; closes them (and their viewers) when the app stops."""
    app[STREAMS] = {}
    yield
    await asyncio.gather(*(s.close() for s in list(app[STREAMS].values())), return_exceptions=True)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/whip", publish)
    app.router.add_get("/whip", listing)
    app.router.add_get("/whip/{stream}", describe)
    app.router.add_post("/whip/{stream}/control", control)
    app.router.add_delete("/whip/{stream}", unpublish)
    app.router.add_post("/whep/{stream}", watch)
    app.router.add_delete("/whep/{stream}/{viewer}", leave)
