"""create_app(config): routes, app-scoped state, startup and cleanup."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from stylecam.server import signaling, styles_api, tls, whip
from stylecam.server.config import CONFIG, ENGINE, PEERS, WEB_DIR, ServerConfig
from stylecam.server.engine import Engine, ThreadPlan
from stylecam.server.ort_model import providers_for
from stylecam.server.registry import Registry, scan
from stylecam.server.style_kinds import STYLE_KINDS
from stylecam.server.user_styles import read_styles, styles_dir

log = logging.getLogger(__name__)


async def _engine_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    device = "cuda" if "CUDAExecutionProvider" in providers_for(config.device) else "cpu"
    entries = scan(config.models, device, config.precision)
    plan = ThreadPlan.for_device(device, config.max_peers, config.threads)
    learnt = read_styles(styles_dir(config.styles_dir))
    threads = {**dict.fromkeys(STYLE_KINDS, plan.style_threads), "saliency": plan.saliency_threads, "lens": plan.saliency_threads}
    registry = Registry(entries, device, threads, learnt)
    size = config.resolved_process_size(device)
    engine = Engine(registry, plan, size, config.max_frame_pixels, config.saliency_fps, config.lens_fps)
    how = "CUDA execution provider, IO binding, fp16 models preferred" if device == "cuda" else f"CPU execution provider, {plan.style_threads} intra-op threads"
    log.info(
        "engine: %s (%s); %d style workers; processing at %s; %d models from %s",
        device, how, plan.style_workers, "full resolution" if size is None else f"up to {size[0]}x{size[1]}", len(entries), config.models,
    )
    for name, entry in entries.items():
        log.info("model %s: %s (%s)", name, entry.onnx.name, entry.card.precision)
    if learnt:
        log.info("%d learnt styles from %s", len(learnt), styles_dir(config.styles_dir))
    app[ENGINE] = engine
    yield
    peers: set = app[PEERS]
    await asyncio.gather(*(peer.close() for peer in list(peers)), return_exceptions=True)
    engine.close()


def create_app(config: ServerConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_offer_bytes, middlewares=[whip.edge, signaling.require_token])
    app[CONFIG] = config
    app[PEERS] = set()
    app[WEB_DIR] = config.web_dir
    app.cleanup_ctx.append(_engine_context)
    app.cleanup_ctx.append(styles_api.learning_context)  # after the engine's: needs its registry
    app.cleanup_ctx.append(whip.streams_context)  # after the engine's: cleaned up before it
    signaling.add_routes(app)
    whip.add_routes(app)
    styles_api.add_routes(app)
    return app


async def serve(config: ServerConfig) -> None:
    """Run until SIGINT/SIGTERM; prints the URL once listening (port 0 picks a free one)."""
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    try:
        context = tls.server_context(*config.tls) if config.tls else None
        site = web.TCPSite(runner, config.host, config.port, ssl_context=context)
        await site.start()
        host, port = runner.addresses[0][:2]
        scheme = "https" if context else "http"
        print(f"stylecam serve: listening on {scheme}://{host}:{port}/", flush=True)
        if config.tls:
            print(f"stylecam serve: certificate {config.tls[0]}, SHA-256 {tls.fingerprint(config.tls[0])}", flush=True)
        if config.token:
            print(f"stylecam serve: open {scheme}://{host}:{port}/?token={config.token} (the page and the API need the token)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
