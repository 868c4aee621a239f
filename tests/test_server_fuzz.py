"""Hostile input at the two doors a client can knock on: POST /offer and the control channel.

Every offer body gets a 4xx (never a 5xx, never an ERROR in the log) and every control
message gets one ``error`` reply while the stream goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random

import pytest
from aiohttp import ClientSession
from aiortc import RTCPeerConnection
from conftest import in_process, run

from stylecam.server.config import PEERS, ServerConfig
from stylecam.server.testing.client import Client, CounterCamera

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def real_offer_sdp() -> str:
    pc = RTCPeerConnection()
    pc.addTrack(CounterCamera())
    pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def offer_corpus(sdp: str) -> list[tuple[str, bytes]]:
    """(content type, body): malformed JSON, hostile JSON, and broken session descriptions."""
    rng = random.Random(7)
    lines = sdp.split("\r\n")
    wrap = lambda text: json.dumps({"sdp": text, "type": "offer"}).encode()  # noqa: E731
    bodies = [
        b"", b"{", b"{not json", b"null", b"[]", b"42", b'"offer"', b"\xff\xfe\x00", b"{}",
        b"[" * 1000 + b"]" * 1000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"1" * 4301, b'{"sdp": ' + b"9" * 5000 + b"}",
        b'{"sdp": "v=0", "type": "answer"}', b'{"sdp": null, "type": "offer"}', b'{"sdp": [], "type": "offer"}',
        b'{"type": "offer"}', json.dumps({"sdp": "x" * 100_000, "type": "offer"}).encode(),
        wrap(""), wrap("this is not sdp"), wrap("v=0\r\n"), wrap(sdp.replace("m=video", "m=audio")),
        wrap(sdp.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 7")), wrap(sdp.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 5")),
    ]
    bodies += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(20)]  # random bytes
    for _ in range(40):  # the real offer with lines dropped, doubled or garbled
        broken = list(lines)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(broken))
            what = rng.randrange(3)
            if what == 0:
                del broken[i]
            elif what == 1:
                broken.insert(i, broken[i])
            else:
                broken[i] = broken[i][: rng.randrange(len(broken[i]) + 1)] + "\x00garbage"
        bodies.append(wrap("\r\n".join(broken)))
    bodies += [wrap(sdp[: rng.randrange(len(sdp))]) for _ in range(15)]  # cut short
    cases = [("application/json", b) for b in bodies]
    cases += [(kind, wrap(sdp)) for kind in ("text/plain", "application/x-www-form-urlencoded", "", "application/sdp")]
    return cases


def test_every_offer_body_gets_a_4xx_and_the_server_stays_healthy(tmp_path, caplog):
    async def go():
        statuses: dict[int, int] = {}
        async with in_process(ServerConfig(models=tmp_path / "none", device="cpu", max_peers=200, max_pending=200, connect_timeout=30)) as (app, url):
            corpus = offer_corpus(await real_offer_sdp())
            assert len(corpus) >= 100
            async with ClientSession() as http:
                for kind, body in corpus:
                    headers = {"Content-Type": kind} if kind else {}
                    async with http.post(url + "/offer", data=body, headers=headers) as response:
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                        payload = await response.json(content_type=None)
                        if response.status != 200:
                            message = payload["error"]
                            assert message and "StopIteration" not in message and not message.endswith(": "), message
                async with http.get(url + "/api/health") as response:
                    assert response.status == 200 and (await response.json())["ok"]
            for peer in list(app[PEERS]):  # offers that happened to be usable
                await peer.close()
        return statuses

    with caplog.at_level(logging.INFO):
        statuses = run(go(), timeout=100)
    print("offer fuzz statuses:", statuses)
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.get(415) == 4 and statuses.get(413) == 1 and statuses.get(400, 0) >= 60, statuses
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


def control_corpus() -> list[str | bytes]:
    rng = random.Random(11)
    messages: list[str | bytes] = [
        '{"type": "config", "strength": ' + "9" * 400 + "}",  # OverflowError as a float
        "[" * 5000 + "]" * 5000,  # RecursionError
        '{"type": "config", "opacity": ' + "7" * 5000 + "}",  # over Python's int-string limit
        "", "{", "null", "[]", "42", '"config"', "{}", '{"type": "nope"}', b"\xff\xfe", b"\x00" * 10,
        '{"type": "config", "style": "picasso"}', '{"type": "config", "style": 5}', '{"type": "config", "style": []}',
        '{"type": "config", "weights": []}', '{"type": "config", "weights": {"nope": 1}}', '{"type": "config", "saliency": "lime"}',
        '{"type": "config", "saliency": null}', '{"type": "config", "colour": 1}', '{"type": "config", "strength": "1"}',
        '{"type": "config", "strength": true}', '{"type": "config", "strength": -0.1}', '{"type": "config", "strength": 1e999}',
        '{"type": "config", "opacity": NaN}', '{"type": "config", "opacity": Infinity}', "x" * 70_000,
    ]
    fields = ("strength", "opacity", "style", "saliency", "weights")
    junk = [None, [], {}, "", -1, 2, 1e308, "off" * 50, {"a": {"b": []}}, True]
    valid = [{"style": None}, {"weights": {}}]  # a null style and an empty blend are fine: left out
    while len(messages) < 120:
        field = rng.choice(fields)
        change = {field: rng.choice(junk)}
        if change not in valid:
            messages.append(json.dumps({"type": "config", **change}))
    return messages


def test_every_bad_control_message_gets_an_error_and_the_stream_goes_on(server_url):
    corpus = control_corpus()
    assert len(corpus) >= 100

    async def go():
        client = Client(server_url)
        await client.connect()
        try:
            client.send({"type": "config", "style": "invert", "saliency": "off"})
            await client.wait_frames(5)
            since = len(client.messages)
            for message in corpus:
                client.channel.send(message)
                await asyncio.sleep(0.005)
            deadline = asyncio.get_running_loop().time() + 20
            while sum(m["type"] == "error" for m in client.messages[since:]) < len(corpus):
                assert asyncio.get_running_loop().time() < deadline, (
                    f"{sum(m['type'] == 'error' for m in client.messages[since:])} errors for {len(corpus)} messages")
                await asyncio.sleep(0.05)
            assert client.pc.connectionState == "connected"
            before = client.received.frames
            await client.wait_frames(15)  # still streaming
            assert client.received.frames >= before + 15
            stats = await client.wait_message("stats", since=len(client.messages))
            assert stats["style"] == "invert" and stats["saliency"] == "off"  # no bad message changed anything
        finally:
            await client.close()

    run(go(), timeout=60)


def test_offers_that_never_connect_are_capped_per_address(tmp_path):
    """--max-pending: a third unconnected offer from one address gets 429; the cap does not
    touch the peer limit (503) nor other addresses."""

    async def go():
        async with in_process(ServerConfig(models=tmp_path / "none", device="cpu", max_peers=4, max_pending=2, connect_timeout=30)) as (app, url):
            body = json.dumps({"sdp": await real_offer_sdp(), "type": "offer"}).encode()
            async with ClientSession() as http:
                statuses = []
                for _ in range(3):
                    async with http.post(url + "/offer", data=body, headers={"Content-Type": "application/json"}) as r:
                        statuses.append(r.status)
                        last = await r.json()
            assert statuses == [200, 200, 429] and "--max-pending" in last["error"], (statuses, last)
            assert len(app[PEERS]) == 2
            for peer in list(app[PEERS]):
                await peer.close()

    run(go(), timeout=60)
