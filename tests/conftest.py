"""Shared fixtures for the server tests: a tiny model zoo and a real ``stylecam serve``
process on 127.0.0.1 (started once per session; tests needing other flags start their own)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/tiny_models.py
# learnt styles (`stylecam learn`) live under $XDG_DATA_HOME: the tests, and the servers and
# commands they start, see an empty folder of their own, never this machine's user's styles
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="stylecam-tests-")


@pytest.fixture(scope="session", autouse=True)
def exports_made_once(tmp_path_factory):
    """Identical exports reuse the first one's file (tests/export_cache.py)."""
    from export_cache import reusing

    from stylecam.export import command, lens, onnx, saliency

    once = reusing(onnx.export_onnx, tmp_path_factory.mktemp("exports"))
    with pytest.MonkeyPatch.context() as patch:
        for module in (onnx, command, lens, saliency):
            patch.setattr(module, "export_onnx", once)
        yield


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    from tiny_models import write_tiny_zoo

    directory = tmp_path_factory.mktemp("zoo")
    write_tiny_zoo(directory)
    return directory


REPO = Path(__file__).resolve().parent.parent
TIERS = ("e2e", "browser", "slow", "gpu")  # pyproject.toml describes each; the rest is ``fast``


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in no heavier tier is ``fast``: ``pytest -m fast`` is the loop to run while working."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.fast)


def needs_tool(present: bool, package: str) -> pytest.MarkDecorator:
    """Skip where a Debian tool is missing, but not in CI (``CI`` set), where ``.ci/install``
    puts it in place: there a missing tool fails its tests instead of hiding them."""
    return pytest.mark.skipif(not present and not os.environ.get("CI"), reason=f"{package} not installed (apt-get install {package})")
SHIPPED = ("multistyle_paint.onnx", "multistyle_paint.json", "saliency_gradcam.onnx", "saliency_gradcam.json",
           "efficientnet_lite0.weights", "efficientnet_lite0.weights.index", "imagenet_classes.txt")


@pytest.fixture(scope="session")
def real_zoo(tmp_path_factory) -> Path:
    """The shipped default style network, the Grad-CAM graph and the lenses (links into models/zoo)."""
    directory = tmp_path_factory.mktemp("real-zoo")
    zoo = REPO / "models" / "zoo"
    for path in [zoo / name for name in SHIPPED] + sorted(zoo.glob("lens_*")) + sorted(zoo.glob("painting_*")):
        (directory / path.name).symlink_to(path)
    return directory


@pytest.fixture(scope="session")
def real_server_url(real_zoo):
    """Base URL of a server on the shipped graphs, CPU, processing at 320x240."""
    from stylecam.server.testing.client import serving

    with serving(real_zoo, ["--device", "cpu", "--process-size", "320x240", "--max-peers", "2"]) as url:
        yield url


@pytest.fixture(scope="session")
def server_url(tiny_zoo):
    """Base URL of a server on the tiny zoo, CPU, silence timeout 2 s."""
    from stylecam.server.testing.client import serving

    with serving(tiny_zoo, ["--device", "cpu", "--silence-timeout", "2", "--max-peers", "4"]) as url:
        yield url


def run(coro, timeout: float = 30.0):
    """Run a coroutine to completion with a hard bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# a well-formed offer that carries no video (an audio m= section only)
AUDIO_ONLY_SDP = "\r\n".join(
    [
        "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 0", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendrecv", "a=rtcp-mux",
        "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=rtpmap:0 PCMU/8000", "",
    ]
)


async def video_offer(direction: str, codec: str | None = None) -> str:
    """An aiortc offer with one video transceiver (candidates gathered), never connected:
    ``sendonly`` sends a CounterCamera, ``recvonly``/``sendrecv`` a bare transceiver;
    ``codec`` (e.g. ``video/VP8``) leaves only that one."""
    from aiortc import RTCPeerConnection, RTCRtpSender

    from stylecam.server.testing.client import CounterCamera

    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver(CounterCamera() if direction == "sendonly" else "video", direction=direction)
    if codec:
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == codec])
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@contextlib.asynccontextmanager
async def in_process(config):
    """``create_app(config)`` served on a free 127.0.0.1 port inside this event loop; yields
    (app, base URL), so a test can reach the app's state as well as its HTTP edge."""
    from aiohttp import web

    from stylecam.server.app import create_app

    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield runner.app, f"http://{host}:{port}"
    finally:
        await runner.cleanup()
