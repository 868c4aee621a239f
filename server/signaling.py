"""HTTP: POST /offer (WebRTC signalling), GET /api/models, /api/classes, /api/health, a
lens's gallery picture, the page.

Errors at this edge are JSON ``{"error": "..."}`` naming the bad value and the fix:
400 for a malformed offer, 413 for an oversized one, 503 when the peer cap is reached.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiortc import RTCSessionDescription

from stylecam.server.config import CONFIG, ENGINE, PEERS, WEB_DIR
from stylecam.server.lenses import ORDERED
from stylecam.server.model_card import beside
from stylecam.server.peer import Peer
from stylecam.server.saliency_methods import ORDERED as SALIENCY_ORDERED
from stylecam.server.sdp import offer_problem, why_refused

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _read_offer(request: web.Request) -> RTCSessionDescription | web.Response:
    if request.content_type != "application/json":
        return _error(415, f"offer must be sent as application/json, not {request.content_type or 'no Content-Type'}")
    limit = request.app[CONFIG].max_offer_bytes
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"offer body of {request.content_length} bytes is over the {limit}-byte limit")
    try:
        body = await request.read()  # the app's client_max_size is this limit
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"offer body is over the {limit}-byte limit")
    try:
        data = json.loads(body)
    except RecursionError:
        return _error(400, "offer body is nested too deeply; send {\"sdp\": \"...\", \"type\": \"offer\"}")
    except ValueError as e:  # bad JSON, bad UTF-8, an integer of over 4300 digits
        return _error(400, f"offer body is not JSON we can read ({e}); send {{\"sdp\": \"...\", \"type\": \"offer\"}}")
    if not isinstance(data, dict) or not isinstance(data.get("sdp"), str) or data.get("type") != "offer":
        return _error(400, 'offer body must be {"sdp": "<session description>", "type": "offer"}')
    return RTCSessionDescription(sdp=data["sdp"], type="offer")


async def offer(request: web.Request) -> web.Response:
    parsed = await _read_offer(request)
    if isinstance(parsed, web.Response):
        return parsed
    problem = offer_problem(parsed.sdp, ("sendonly", "sendrecv"),
                            "the offer has no video track; send the camera with addTrack or a sendrecv video transceiver")
    if problem:
        return _error(400, f"cannot use this offer: {problem}")
    app = request.app
    peers, config = app[PEERS], app[CONFIG]
    if len(peers) >= config.max_peers:
        return _error(503, f"server is full ({config.max_peers} peers, --max-peers); try again later")
    if sum(p.pending and p.remote == request.remote for p in peers) >= config.max_pending:
        return _error(429, f"{config.max_pending} offers from this address have not connected yet (--max-pending); "
                           f"finish or abandon them ({config.connect_timeout:g} s) first")
    engine = app[ENGINE]
    peer = Peer(engine, engine.registry.catalog(), config.silence_timeout, config.connect_timeout, peers.discard,
                request.remote, config.ice_servers)
    peers.add(peer)
    try:
        answer = await peer.answer(parsed)
    except Exception as e:  # aiortc raises ValueError and others for SDP it cannot use
        await peer.close()
        log.info("rejected offer: %s: %s", type(e).__name__, e)
        return _error(400, f"cannot use this offer: {why_refused(e)}")
    return web.json_response({"sdp": answer.sdp, "type": answer.type})


async def models(request: web.Request) -> web.Response:
    methods = [method.descriptor() for method in SALIENCY_ORDERED]
    lenses = [lens.descriptor() for lens in ORDERED]
    return web.json_response({"models": request.app[ENGINE].registry.describe(), "saliency_methods": methods, "lens_methods": lenses})


async def classes(request: web.Request) -> web.Response:
    """The classifier's class names in index order: the page's fooling-target choices."""
    return web.json_response({"classes": list(request.app[ENGINE].registry.classes())})


async def gallery(request: web.Request) -> web.FileResponse | web.Response:
    """The thumbnail picture a lens card names (the neighbours lens's photos), from beside its card."""
    name = request.match_info["name"]
    entry = request.app[ENGINE].registry.entries.get(name)
    picture = entry.card.options.get("gallery") if entry is not None and entry.card.kind == "lens" else None
    if entry is None or not isinstance(picture, str):
        return _error(404, f"no lens named {name!r} has a gallery; GET /api/models lists the lenses")
    path = beside(entry.onnx.parent, picture)
    if path is None:
        return _error(404, f"lens {name!r} names a gallery {picture!r} that is not beside its card")
    return web.FileResponse(path, headers={"Cache-Control": "max-age=3600"})


async def client_config(request: web.Request) -> web.Response:
    """What the page's RTCPeerConnection needs: the same STUN/TURN servers as the server's."""
    return web.json_response({"iceServers": [s.as_dict() for s in request.app[CONFIG].ice_servers]})


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    peers, limit = len(request.app[PEERS]), request.app[CONFIG].max_peers
    return web.json_response({"ok": True, "device": engine.registry.device, "peers": peers, "max_peers": limit,
                              "busy": peers >= limit, "models": len(engine.registry.entries)})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[WEB_DIR] / "index.html", headers={"Cache-Control": "no-cache"})


NEEDS_TOKEN = ("/offer", "/api/", "/whip", "/whep")


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token configured, /offer, /api/*, /whip* and /whep* answer 401 without it; the page itself loads."""
    token = request.app[CONFIG].token
    if token and request.path.startswith(NEEDS_TOKEN):
        given = request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _error(401, "this server needs its token: open the page at the URL `stylecam serve` printed "
                               "(ending ?token=...), or send Authorization: Bearer TOKEN (OBS: Settings > Stream > Bearer Token)")
    return await handler(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_post("/offer", offer)
    app.router.add_get("/api/models", models)
    app.router.add_get("/api/classes", classes)
    app.router.add_get("/api/models/{name}/gallery", gallery)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/config", client_config)
    app.router.add_static("/static/", app[WEB_DIR], show_index=False, follow_symlinks=False)
