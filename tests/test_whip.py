"""WHIP and WHEP routes on their own, fast, in this process, with offers that never connect:
the starting settings a query gives (and the words for a bad one), a stream's life over HTTP
(publish, list, describe, control, watch, leave, delete), every error status, CORS, the
viewer cap, and the watchdogs; test_server_whip sends real video through them."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from conftest import in_process, run, video_offer

from stylecam.server import whip
from stylecam.server.config import PEERS, ServerConfig
from stylecam.server.control import Catalog, ControlError, Settings
from stylecam.server.testing.whip_client import request
from stylecam.server.whip import CORS, STREAMS, settings_from_query

pytestmark = pytest.mark.timeout(60)
CATALOG = Catalog(styles=("invert",), multistyles={"tint": ("red", "blue")}, saliency=("vanilla", "gradcam"))


@pytest.mark.parametrize("query, settings", [
    ({}, Settings(style="tint")),
    ({"token": "x"}, Settings(style="tint")),
    ({"style": "none"}, Settings(style=None)),
    ({"style": ""}, Settings(style=None)),
    ({"style": "invert", "strength": "0.5", "saliency": "gradcam", "opacity": "0.25"},
     Settings(style="invert", strength=0.5, saliency="gradcam", opacity=0.25)),
    ({"style": "tint", "weights": "red=0.7,blue=0.3,"}, Settings(style="tint", weights=(("blue", 0.3), ("red", 0.7)))),
    ({"weights": "blue=1"}, Settings(style="tint", weights=(("blue", 1.0),))),
])
def test_a_query_gives_the_starting_settings(query, settings):
    assert settings_from_query(query, CATALOG) == settings


@pytest.mark.parametrize("query, message", [
    ({"colour": "red", "size": "2", "style": "tint"},
     "unknown query parameter(s) colour, size; valid: style, weights, strength, saliency, opacity"),
    ({"strength": "lots"}, "strength must be a number from 0 to 1, got 'lots'"),
    ({"opacity": "half"}, "opacity must be a number from 0 to 1, got 'half'"),
    ({"weights": "red:1"}, "weights must read STYLE=W,STYLE=W (W from 0 to 1), got 'red:1'"),
    ({"weights": "red=1,blue"}, "weights must read STYLE=W,STYLE=W (W from 0 to 1), got 'red=1,blue'"),
    ({"weights": "red=x"}, "the weight of red must be a number from 0 to 1, got 'x'"),
    ({"style": "nope"}, "unknown style 'nope'"),
])
def test_a_bad_query_says_what_is_wrong(query, message):
    with pytest.raises(ControlError) as e:
        settings_from_query(query, CATALOG)
    assert message in str(e.value)


async def post(url: str, body: str, content_type: str = "application/sdp") -> tuple[int, str, str | None]:
    status, text, location = await request("POST", url, body, content_type)
    return status, (json.loads(text)["error"] if status >= 400 else text), location


def test_a_stream_over_http_from_publish_to_delete(tiny_zoo, monkeypatch):
    monkeypatch.setattr(whip, "MAX_VIEWERS", 1)

    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu", connect_timeout=30)) as (app, url):
            status, answer, location = await post(url + "/whip?style=tint&weights=red=1&opacity=0.3", await video_offer("sendonly"))
            assert status == 201 and answer.startswith("v=0") and "m=video" in answer
            sid = re.fullmatch(r"/whip/([\w-]{12})", location).group(1)
            assert list(app[STREAMS]) == [sid] and len(app[PEERS]) == 1
            stream = json.loads((await request("GET", f"{url}/whip/{sid}"))[1])
            assert stream == {"id": sid, "connected": False, "viewers": 0, "frames_in": 0, "dropped": 0, "frames_styled": 0,
                              "frames_encoded": 0, "bytes_encoded": 0, "ms": {}, "top5": [],
                              "settings": {"style": "tint", "weights": {"red": 1.0}, "strength": 1.0, "saliency": "off",
                                           "opacity": 0.3, "lens": "off", "layer": None, "channel": -1, "target": None}}
            assert json.loads((await request("GET", f"{url}/whip"))[1]) == {"streams": [stream]}
            live = app[STREAMS][sid]
            source, track = live.peer.source, live.peer.track
            live.peer.source = SimpleNamespace(frames_in=9, dropped=2, stop=source.stop)
            live.peer.track = SimpleNamespace(frames_out=7, stop=track.stop)
            live.encoder.frames, live.encoder.bytes, live.encoder.ms = 6, 4321, 12.34
            counted = json.loads((await request("GET", f"{url}/whip/{sid}"))[1])
            assert {k: counted[k] for k in ("frames_in", "dropped", "frames_styled", "frames_encoded", "bytes_encoded", "ms")} == {
                "frames_in": 9, "dropped": 2, "frames_styled": 7, "frames_encoded": 6, "bytes_encoded": 4321, "ms": {"h264": 12.3}}
            encoder = live.encoder
            live.peer.source = live.peer.track = live.encoder = None  # as it reads while its offer is answered
            before = json.loads((await request("GET", f"{url}/whip/{sid}"))[1])
            assert [before[k] for k in ("frames_in", "dropped", "frames_styled", "frames_encoded", "bytes_encoded")] == [0] * 5
            live.peer.source, live.peer.track, live.encoder = source, track, encoder
            live.encoder.frames = live.encoder.bytes = 0
            status, text, _ = await post(f"{url}/whip/{sid}/control", '{"type": "config", "strength": 0.5}', "application/json")
            assert status == 200 and json.loads(text)["strength"] == 0.5
            status, error, _ = await post(f"{url}/whip/{sid}/control", '{"type": "config", "strength": 5}', "application/json")
            assert status == 400 and "strength" in error
            assert app[STREAMS][sid].peer.pipeline.settings.strength == 0.5  # unchanged by the bad one

            status, answer, location = await post(f"{url}/whep/{sid}", await video_offer("recvonly"))
            assert status == 201 and "H264" in answer
            vid = re.fullmatch(rf"/whep/{sid}/([\w-]{{12}})", location).group(1)
            assert list(app[STREAMS][sid].viewers) == [vid]
            viewer = app[STREAMS][sid].viewers[vid]
            status, error, _ = await post(f"{url}/whep/{sid}", await video_offer("recvonly"))
            assert (status, error) == (503, f"stream {sid!r} has 1 viewers, the most it takes; try again later")
            assert (await request("DELETE", f"{url}/whep/{sid}/{vid}"))[0] == 200
            assert app[STREAMS][sid].viewers == {} and viewer._watchdog.cancelled()  # a viewer that leaves takes its watchdog along
            status, text, _ = await request("DELETE", f"{url}/whep/{sid}/{vid}")
            assert (status, json.loads(text)["error"]) == (404, f"stream {sid!r} has no viewer {vid!r}")

            assert (await request("DELETE", f"{url}/whip/{sid}"))[0] == 200
            assert app[STREAMS] == {} and app[PEERS] == set() and live.encoder.ended
            _, _, location = await post(url + "/whip", await video_offer("sendonly"))  # never watched: its encoder
            unwatched = next(iter(app[STREAMS].values()))                            # waits for a viewer, not a frame
            assert (await request("DELETE", url + location))[0] == 200
            assert unwatched.encoder._task.done() and app[STREAMS] == {}
            gone = f"no stream {sid!r} is being published here (it ended, or the URL is wrong)"
            for method, path, body in [("GET", f"/whip/{sid}", None), ("DELETE", f"/whip/{sid}", None),
                                       ("POST", f"/whip/{sid}/control", "{}"), ("DELETE", f"/whep/{sid}/x", None),
                                       ("POST", f"/whep/{sid}", "v=0")]:
                status, text, _ = await request(method, url + path, body, "application/json" if body == "{}" else "application/sdp")
                assert (status, json.loads(text)["error"]) == (404, gone), path

    run(go())


def test_offers_a_stream_cannot_use(tiny_zoo):
    async def go():
        config = ServerConfig(models=tiny_zoo, device="cpu", max_peers=1, max_offer_bytes=500)
        async with in_process(config) as (app, url):
            publish_offer = await video_offer("sendonly")
            status, error, _ = await post(url + "/whip", publish_offer)
            assert (status, error) == (413, "offer is over the 500-byte limit")
        config = ServerConfig(models=tiny_zoo, device="cpu", max_peers=1)
        async with in_process(config) as (app, url):
            status, error, _ = await post(url + "/whip", publish_offer, "text/plain")
            assert (status, error) == (415, "send the offer as application/sdp, not text/plain")
            status, error, _ = await post(url + "/whip", publish_offer, "application/json")
            assert (status, error) == (415, "send the offer as application/sdp, not application/json")
            status, error, _ = await post(url + "/whip", await video_offer("recvonly"))
            assert (status, error) == (400, "cannot use this offer: the offer sends no video; publish a video track")
            unusable = re.sub(r"a=rtpmap:\d+ (VP8|H264|rtx)/", "a=rtpmap:96 FOO/", publish_offer)
            status, error, _ = await post(url + "/whip", unusable)
            assert status == 400 and error.startswith("cannot use this offer: ")
            assert app[STREAMS] == {} and app[PEERS] == set()
            status, _, location = await post(url + "/whip", publish_offer)
            assert status == 201
            status, error, _ = await post(url + "/whip", publish_offer)
            assert (status, error) == (503, "server is full (1 peers, --max-peers); try again later")
            assert (await post(url + "/whip?bad=1", publish_offer))[0] == 400  # the query is judged before the cap
            status, error, _ = await post(url + location.replace("whip", "whep"), publish_offer)
            assert (status, error) == (400, "cannot use this offer: the offer receives no video; add a recvonly video transceiver")
            status, error, _ = await post(url + location.replace("whip", "whep"), await video_offer("recvonly", "video/VP8"))
            assert status == 400 and error.endswith("(the stream is sent as H.264; offer H.264 packetization-mode 1)")
            stream = next(iter(app[STREAMS].values()))
            assert stream.viewers == {}
            await stream.encoder.close()
            status, error, _ = await post(url + location.replace("whip", "whep"), await video_offer("recvonly"))
            assert (status, error) == (404, f"stream {stream.id!r} has ended")
        assert stream.close().done()  # the app's end closed it

    run(go())


def test_cors_on_every_whip_and_whep_answer_and_nowhere_else(tiny_zoo):
    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu", token="s3cret")) as (_, url), aiohttp.ClientSession() as http:
            for path in ("/whip", "/whep/x", "/whip/x/control"):
                async with http.options(url + path, headers={"Origin": "http://player.example"}) as r:
                    assert r.status == 204 and {k: r.headers[k] for k in CORS} == CORS
            for path, status in (("/whip", 401), ("/whip/x?token=s3cret", 404)):
                async with http.get(url + path) as r:
                    assert r.status == status and {k: r.headers[k] for k in CORS} == CORS
            async with http.get(url + "/api/health?token=s3cret") as r:
                assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
            async with http.options(url + "/api/health?token=s3cret") as r:
                assert r.status != 204

    run(go())


@pytest.mark.slow
def test_offers_that_never_connect_are_closed_by_their_watchdogs(tiny_zoo):
    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu", connect_timeout=0.5)) as (app, url):
            _, _, location = await post(url + "/whip", await video_offer("sendonly"))
            stream = next(iter(app[STREAMS].values()))
            status, _, _ = await post(url + location.replace("whip", "whep"), await video_offer("recvonly"))
            assert status == 201 and len(stream.viewers) == 1
            viewer = next(iter(stream.viewers.values()))
            for _ in range(100):
                if not app[STREAMS] and not stream.viewers:
                    break
                await asyncio.sleep(0.05)
            assert app[STREAMS] == {} and app[PEERS] == set() and stream.viewers == {}
            assert viewer.close().done() and viewer.pc.connectionState == "closed"

    run(go())


async def watched_with_state(app, url, monkeypatch, state: str):
    """A published stream whose publisher counts as connected, and one viewer, while every
    peer connection's state reads ``state``: the viewer's own watchdog alone decides."""
    _, _, location = await post(url + "/whip", await video_offer("sendonly"))
    stream = next(iter(app[STREAMS].values()))
    stream.peer.connected_at = time.monotonic()  # the publisher's own watchdog leaves it be
    monkeypatch.setattr(RTCPeerConnection, "connectionState", property(lambda pc: state))
    status, _, _ = await post(url + location.replace("whip", "whep"), await video_offer("recvonly"))
    assert status == 201
    return stream, next(iter(stream.viewers.values()))


@pytest.mark.slow
def test_a_connected_viewer_outlives_its_watchdog(tiny_zoo, monkeypatch):
    """The viewer's watchdog closes only a viewer still unconnected at connect_timeout (the
    test above); one connected by then stays (its state reads "connected")."""
    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu", connect_timeout=0.3)) as (app, url):
            stream, viewer = await watched_with_state(app, url, monkeypatch, "connected")
            await asyncio.sleep(0.8)
            assert viewer._watchdog.done() and viewer._closing is None and list(stream.viewers) == [viewer.id]

    run(go())


def test_an_offer_aiortc_refuses_is_a_400_and_leaves_nothing(tiny_zoo, monkeypatch):
    """aiortc raises ValueError (and others) for SDP it cannot use, past what offer_problem
    checks: the publisher gets 400 with aiortc's reason, and no stream or peer is left."""
    async def refuse(self, offer):
        raise ValueError("DTLS fingerprint is missing")

    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu")) as (app, url):
            monkeypatch.setattr(whip.Peer, "answer", refuse)
            status, error, _ = await post(url + "/whip", await video_offer("sendonly"))
            assert (status, error) == (400, "cannot use this offer: DTLS fingerprint is missing")
            await asyncio.sleep(0.05)
            assert app[STREAMS] == {} and app[PEERS] == set()

    run(go())


@pytest.mark.slow
def test_a_viewer_still_connecting_at_its_timeout_is_closed_and_its_stream_stays(tiny_zoo, monkeypatch):
    """The viewer's own watchdog (the publisher kept alive): "new", "connecting" and the
    rest are all not connected."""
    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu", connect_timeout=0.3)) as (app, url):
            stream, viewer = await watched_with_state(app, url, monkeypatch, "connecting")
            for _ in range(40):
                if not stream.viewers:
                    break
                await asyncio.sleep(0.05)
            assert stream.viewers == {} and viewer._closing is not None and list(app[STREAMS]) == [stream.id]

    run(go())


def test_closing_goes_on_past_a_close_that_fails(tiny_zoo, monkeypatch):
    """A viewer whose transport raises on close still leaves its stream; a stream whose
    viewer fails to close still closes its encoder and leaves the server; a stream that
    fails to close does not stop the others closing when the app ends."""
    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu")) as (app, url):
            _, _, location = await post(url + "/whip", await video_offer("sendonly"))
            stream = next(iter(app[STREAMS].values()))
            assert (await post(url + location.replace("whip", "whep"), await video_offer("recvonly")))[0] == 201
            viewer = next(iter(stream.viewers.values()))

            async def broken_close():
                raise OSError("transport gone")

            monkeypatch.setattr(viewer.pc, "close", broken_close)
            await viewer.close()
            assert stream.viewers == {}

            async def fails():
                raise RuntimeError("viewer close failed")

            stream.viewers["x"] = SimpleNamespace(close=lambda: asyncio.ensure_future(fails()))
            await stream.close()
            assert stream.encoder.ended and app[STREAMS] == {}

        closed = []

        async def close_fails():
            raise RuntimeError("stream close failed")

        async def close_works():
            closed.append(True)

        holder = {}
        context = whip.streams_context(holder)
        await context.__anext__()
        holder[STREAMS].update(a=SimpleNamespace(close=lambda: asyncio.ensure_future(close_fails())),
                               b=SimpleNamespace(close=lambda: asyncio.ensure_future(close_works())))
        with pytest.raises(StopAsyncIteration):
            await context.__anext__()
        assert closed == [True]

    run(go())


def test_the_documented_viewer_cap_is_the_code_s():
    for page in ("docs/guides/whip.md", "docs/design/fanout.md"):
        text = (Path(__file__).resolve().parents[1] / page).read_text()
        assert f"up to {whip.MAX_VIEWERS} viewers" in " ".join(text.split()), page
