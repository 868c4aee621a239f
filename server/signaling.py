"""HTTP: POST /offer (WebRTC signalling), GET /api/models, GET /api/health, the page.

Errors at this edge are JSON ``{"error": "..."}`` naming the bad value and the fix:
400 for a malformed or oversized offer, 503 when the peer cap is reached.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiortc import RTCSessionDescription

from stylecam.server.config import CONFIG, ENGINE, PEERS, WEB_DIR
from stylecam.server.model_card import SALIENCY_METHODS
from stylecam.server.peer import Peer

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _read_offer(request: web.Request) -> RTCSessionDescription | web.Response:
    limit = request.app[CONFIG].max_offer_bytes
    if request.content_length is not None and request.content_length > limit:
        return _error(400, f"offer body of {request.content_length} bytes is over the {limit}-byte limit")
    try:
        body = await request.read()  # the app's client_max_size is this limit
    except web.HTTPRequestEntityTooLarge:
        return _error(400, f"offer body is over the {limit}-byte limit")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return _error(400, f"offer body is not JSON ({e}); send {{\"sdp\": \"...\", \"type\": \"offer\"}}")
    if not isinstance(data, dict) or not isinstance(data.get("sdp"), str) or data.get("type") != "offer":
        return _error(400, 'offer body must be {"sdp": "<session description>", "type": "offer"}')
    return RTCSessionDescription(sdp=data["sdp"], type="offer")


async def offer(request: web.Request) -> web.Response:
    parsed = await _read_offer(request)
    if isinstance(parsed, web.Response):
        return parsed
    app = request.app
    peers, config = app[PEERS], app[CONFIG]
    if len(peers) >= config.max_peers:
        return _error(503, f"server is full ({config.max_peers} peers, --max-peers); try again later")
    engine = app[ENGINE]
    peer = Peer(engine, engine.registry.catalog(), config.silence_timeout, config.connect_timeout, peers.discard)
    peers.add(peer)
    try:
        answer = await peer.answer(parsed)
    except Exception as e:  # aiortc raises ValueError and others for SDP it cannot use
        await peer.close()
        log.info("rejected offer: %s", e)
        return _error(400, f"cannot use this offer: {e}")
    return web.json_response({"sdp": answer.sdp, "type": answer.type})


async def models(request: web.Request) -> web.Response:
    methods = [{"method": method, "label": label} for method, label in SALIENCY_METHODS.items()]
    return web.json_response({"models": request.app[ENGINE].registry.describe(), "saliency_methods": methods})


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    return web.json_response({"ok": True, "device": engine.registry.device, "peers": len(request.app[PEERS]), "models": len(engine.registry.entries)})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[WEB_DIR] / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_post("/offer", offer)
    app.router.add_get("/api/models", models)
    app.router.add_get("/api/health", health)
    app.router.add_static("/static/", app[WEB_DIR], show_index=False, follow_symlinks=False)
