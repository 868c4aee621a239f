"""WHIP publisher and WHEP viewer on aiortc, for tests and benchmarks of ``stylecam serve``.

The publisher sends a ``CounterCamera`` (H.264 preferred, as OBS sends); the viewer reads
the styled stream back with ``Client``'s reader, which matches every returned frame to
the frame the camera sent by its pts (learnt from the drawn counter while the stream
passes through unstyled), so latency is measured from publisher's encoder to viewer's
decoder, through the server's styling and its one shared encode.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from yarl import URL

from stylecam.server.testing.client import Client, CounterCamera, Received

SDP = "application/sdp"


class WhipError(Exception):
    """The server refused a WHIP/WHEP request: its status and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


async def request(method: str, url: str, body: str | None = None, content_type: str = SDP) -> tuple[int, str, str | None]:
    """One HTTP request: (status, body text, Location header)."""
    headers = {"Content-Type": content_type} if body is not None else {}
    async with aiohttp.ClientSession() as session, session.request(method, url, data=body, headers=headers) as response:
        return response.status, await response.text(), response.headers.get("Location")


async def _exchange(pc: RTCPeerConnection, url: str) -> str:
    """Offer (all candidates gathered: aiortc does not trickle), POST it, apply the answer;
    returns the absolute URL of the resource the server made."""
    await pc.setLocalDescription(await pc.createOffer())
    status, text, location = await request("POST", url, pc.localDescription.sdp)
    if status != 201 or not location:
        raise WhipError(status, text)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    return str(URL(url).join(URL(location)))


class WhipPublisher:
    """Publishes a synthetic camera to ``POST /whip``; ``query`` sets the starting style."""

    def __init__(self, base_url: str, camera: CounterCamera, query: str = "", codec: str = "video/H264") -> None:
        self.url = f"{base_url.rstrip('/')}/whip" + (f"?{query}" if query else "")
        self.camera = camera
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = self.pc.addTransceiver(camera, direction="sendonly")
        transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == codec])
        self.resource: str | None = None

    @property
    def stream_id(self) -> str:
        assert self.resource, "publish() first"
        return self.resource.rstrip("/").rsplit("/", 1)[1]

    async def publish(self) -> str:
        """Publish; returns the stream's resource URL."""
        self.resource = await _exchange(self.pc, self.url)
        return self.resource

    async def control(self, message: dict[str, Any]) -> tuple[int, dict]:
        """POST a control message to the stream: (status, JSON reply)."""
        assert self.resource, "publish() first"
        status, text, _ = await request("POST", f"{self.resource}/control", json.dumps(message), "application/json")
        return status, json.loads(text)

    async def stats(self) -> dict:
        assert self.resource, "publish() first"
        status, text, _ = await request("GET", self.resource)
        if status != 200:
            raise WhipError(status, text)
        return json.loads(text)

    async def close(self) -> int | None:
        """DELETE the stream (its status; None if never published) and close the connection."""
        status = (await request("DELETE", self.resource))[0] if self.resource else None
        await self.pc.close()
        return status


class WhepViewer(Client):
    """Pulls a stream from ``POST /whep/ID``; frames are read and matched to ``camera``
    (the publisher's) as ``Client`` does for its own camera. Unlike ``Client`` it opens no
    control channel (its __init__ is its own): WHEP only receives."""

    def __init__(self, url: str, camera: CounterCamera, decode_every: int = 1) -> None:
        self.url = url
        self.camera = camera
        self.received = Received()
        self.messages: list[dict] = []
        self.decode_every = decode_every
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.on("track", self._on_track)
        self._reader = None
        self.resource: str | None = None

    async def connect(self, timeout: float = 15.0) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        self.resource = await _exchange(self.pc, self.url)

    async def close(self) -> None:
        """DELETE this viewer on the server (if it is still there) and close the connection."""
        if self.resource:
            await request("DELETE", self.resource)
        await super().close()
