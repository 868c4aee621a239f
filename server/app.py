"""create_app(config): routes, app-scoped state (web.AppKey slots), startup and cleanup."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from aiohttp import web

from server.engine import Engine, ThreadPlan
from server.ort_model import providers_for
from server.registry import Registry, scan

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
# largest size frames are styled at on CPU: style + Grad-CAM for one peer at 24 fps on 2 cores
# (320x240: 17 fps), measured with `stylecam bench e2e --process-size`
CPU_PROCESS_SIZE = (256, 192)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    models: Path = REPO / "models" / "zoo"
    device: str = "auto"  # auto | cpu | cuda
    max_peers: int = 4
    process_size: tuple[int, int] | None | str = "auto"  # (max w, max h), None = full, "auto": CPU_PROCESS_SIZE on CPU, full on GPU
    max_frame_pixels: int = 1920 * 1080
    saliency_fps: float = 5.0
    silence_timeout: float = 3.0
    connect_timeout: float = 15.0
    threads: int = 0  # CPU cores to plan for; 0 = all this process may use
    max_offer_bytes: int = 64 * 1024
    web_dir: Path = REPO / "web"

    def resolved_process_size(self, device: str) -> tuple[int, int] | None:
        if self.process_size == "auto":
            return None if device == "cuda" else CPU_PROCESS_SIZE
        return self.process_size  # type: ignore[return-value]


CONFIG = web.AppKey("config", ServerConfig)
ENGINE = web.AppKey("engine", Engine)
PEERS = web.AppKey("peers", set)
WEB_DIR = web.AppKey("web_dir", Path)


async def _engine_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    device = "cuda" if "CUDAExecutionProvider" in providers_for(config.device) else "cpu"
    entries = scan(config.models, device)
    plan = ThreadPlan.for_device(device, config.max_peers, config.threads)
    registry = Registry(entries, device, {"style": plan.style_threads, "multistyle": plan.style_threads, "saliency": plan.saliency_threads})
    size = config.resolved_process_size(device)
    engine = Engine(registry, plan, size, config.max_frame_pixels, config.saliency_fps)
    how = "CUDA execution provider, IO binding, fp16 models preferred" if device == "cuda" else f"CPU execution provider, {plan.style_threads} intra-op threads"
    log.info(
        "engine: %s (%s); %d style workers; processing at %s; %d models from %s",
        device, how, plan.style_workers, "full resolution" if size is None else f"up to {size[0]}x{size[1]}", len(entries), config.models,
    )
    app[ENGINE] = engine
    yield
    await asyncio.gather(*(peer.close() for peer in list(app[PEERS])), return_exceptions=True)
    engine.close()


def create_app(config: ServerConfig) -> web.Application:
    from server import signaling  # reads the keys above, so imported once they exist

    app = web.Application(client_max_size=config.max_offer_bytes)
    app[CONFIG] = config
    app[PEERS] = set()
    app[WEB_DIR] = config.web_dir
    app.cleanup_ctx.append(_engine_context)
    signaling.add_routes(app)
    return app


async def serve(config: ServerConfig) -> None:
    """Run until SIGINT/SIGTERM; prints the URL once listening (port 0 picks a free one)."""
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"stylecam serve: listening on http://{host}:{port}/", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
