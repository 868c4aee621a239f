"""A peer on its own, fast, in this process: what ends it (never connecting, silence, its
track ending, its connection closing), its once-a-second stats, its control channel (a good
message, a bad one, one that breaks, a channel of another name), lens messages a few times
a second at most, and audio drained; test_server_stream drives peers through a real server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiortc import AudioStreamTrack, RTCPeerConnection
from conftest import in_process, run

from stylecam.server import peer as peer_module
from stylecam.server.config import ENGINE, PEERS, IceServer, ServerConfig
from stylecam.server.peer import Peer, rtc_configuration
from stylecam.server.testing.client import Client

pytestmark = pytest.mark.timeout(60)


def test_ice_servers_reach_the_peer_connection():
    config = rtc_configuration((IceServer("stun:127.0.0.1:3478"), IceServer("turn:127.0.0.1:3478", "u", "p")))
    assert [(s.urls, s.username, s.credential) for s in config.iceServers] == [
        ("stun:127.0.0.1:3478", None, None), ("turn:127.0.0.1:3478", "u", "p")]
    assert rtc_configuration(()).iceServers == []


@contextlib.asynccontextmanager
async def lone_peer(zoo: Path, silence: float = 10.0, connect: float = 10.0) -> AsyncIterator[tuple[Peer, list]]:
    """A peer of an in-process server on ``zoo``, never offered anything; and the list its
    end is reported to."""
    async with in_process(ServerConfig(models=zoo, device="cpu")) as (app, _):
        closed: list = []
        engine = app[ENGINE]
        yield Peer(engine, engine.registry.catalog(), silence, connect, closed.append), closed


def messages_of(peer: Peer) -> list[dict]:
    """What the peer sends its page from now on, kept here instead."""
    sent: list[dict] = []
    peer._send = sent.append  # type: ignore[method-assign]
    return sent


async def ended_within(closed: list, seconds: float) -> float:
    start = time.monotonic()
    while not closed:
        assert time.monotonic() - start < seconds, "the peer was not closed in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("case", ["never connected", "silent", "track ended", "frames flowing"])
def test_the_watchdog_ends_a_peer_that_never_connects_goes_silent_or_loses_its_track(tiny_zoo, case):
    async def go():
        async with lone_peer(tiny_zoo, silence=0.6, connect=0.6) as (peer, closed):
            assert peer.pending and peer.pipeline.settings.style == "tint"  # the catalog's default style
            now = time.monotonic()
            if case != "never connected":
                peer.connected_at = now
                peer.source = SimpleNamespace(ended=case == "track ended", last_frame_at=None if case == "silent" else now,
                                              stop=lambda: None)
            watchdog = asyncio.create_task(peer._watchdog())
            if case == "frames flowing":
                for _ in range(7):  # 1.4 s, over twice the silence timeout
                    peer.source.last_frame_at = time.monotonic()
                    await asyncio.sleep(0.2)
                assert not closed and not watchdog.done()
                watchdog.cancel()
                await peer.close()
                return
            took = await ended_within(closed, 4)
            assert closed == [peer] and peer.pc.connectionState == "closed"
            assert took < 0.8 if case == "track ended" else took >= 0.6, took  # a timeout waits its time; an end does not

    run(go())


def test_close_is_once_and_frees_everything(tiny_zoo):
    async def go():
        async with lone_peer(tiny_zoo) as (peer, closed):
            peer._tasks.append(asyncio.create_task(asyncio.sleep(60)))
            first = peer.close()
            assert peer.close() is first
            await first
            assert closed == [peer] and peer.pipeline.closed and peer._tasks[0].cancelled()

    run(go())


@pytest.mark.slow
def test_stats_each_second_count_the_frames_in_and_out(tiny_zoo, monkeypatch):
    """Rates over the span each message covers, read from the peer's clock (held here: 3 s,
    3 s, then 0.5 s, so that a rate is neither its count nor a whole number): zeros before the
    video arrives, then the frames in, out and lens runs of each span, to one decimal."""
    clock = [1000.0]
    monkeypatch.setattr(peer_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))

    async def go():
        async with lone_peer(tiny_zoo) as (peer, _):
            sent = messages_of(peer)
            task = asyncio.create_task(peer._stats())
            await asyncio.sleep(0.5)
            clock[0] = 1003.0
            await asyncio.sleep(1.0)  # the first message: no source or track yet
            peer.source = SimpleNamespace(frames_in=40, dropped=3, stop=lambda: None)
            peer.track = SimpleNamespace(frames_out=20, stop=lambda: None)
            peer.pipeline.lens.runs, clock[0] = 7, 1006.0
            await asyncio.sleep(1.0)
            peer.source.frames_in, peer.track.frames_out, peer.pipeline.lens.runs, clock[0] = 50, 25, 11, 1006.5
            await asyncio.sleep(1.0)
            task.cancel()
            assert len(sent) == 3, sent
            assert sent[0] == {"type": "stats", "fps_in": 0.0, "fps_out": 0.0, "dropped": 0, "ms": {}, "top5": [], "style": "tint",
                               "saliency": "off", "lens": "off", "lens_fps": 0.0, "lens_info": None}
            assert [(m["fps_in"], m["fps_out"], m["lens_fps"], m["dropped"]) for m in sent[1:]] == [(13.3, 6.7, 2.3, 3), (20.0, 10.0, 8.0, 3)]
            await peer.close()

    run(go())


def test_lens_messages_reach_the_page_a_few_times_a_second_at_most(tiny_zoo):
    async def go():
        async with lone_peer(tiny_zoo) as (peer, _):
            sent = messages_of(peer)
            for i in range(3):
                peer._send_lens({"n": i})
            assert sent == [{"type": "lens", "n": 0}]
            await asyncio.sleep(0.25)  # "a few times a second": 0.25 s later the next one goes
            peer._send_lens({"n": 3})
            assert sent[-1] == {"type": "lens", "n": 3} and len(sent) == 2
            await peer.close()

    run(go())


def test_a_worker_calls_back_on_the_loop_and_not_after_it_closed(tiny_zoo):
    got: list[dict] = []

    async def go():
        async with lone_peer(tiny_zoo) as (peer, _):
            await asyncio.to_thread(peer._from_worker, got.append, {"from": "a thread"})
            await asyncio.sleep(0.05)
            await peer.close()
            return peer

    peer = run(go())
    assert got == [{"from": "a thread"}]
    peer._from_worker(got.append, {"too": "late"})  # the loop has closed: dropped, no error
    assert got == [{"from": "a thread"}]


@pytest.mark.slow
def test_a_connected_peer_takes_control_messages_and_says_what_is_wrong(tiny_zoo, monkeypatch):
    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu")) as (app, url):
            client = Client(url, fps=15)
            client.pc.addTrack(AudioStreamTrack())  # sound is read and dropped, the video is styled
            others = [client.pc.createDataChannel(label) for label in ("chat", "metadata")]  # before and after "control"
            closed = [asyncio.Event() for _ in others]
            for other, event in zip(others, closed):
                other.on("close", event.set)
            try:
                await client.connect()
                peer = next(iter(app[PEERS]))
                await client.wait_frames(3)
                assert not peer.pending and len(peer._drains) == 1
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in closed)), 5)  # channels not named "control" are closed
                stats = await client.wait_message("stats")
                assert stats["fps_in"] > 0 and stats["style"] == "tint"
                client.send({"type": "config", "style": "invert"})
                client.send({"type": "config", "strength": 7})
                error = await client.wait_message("error")
                assert "strength" in error["message"] and peer.pipeline.settings.style == "invert"

                def broken(*args):
                    raise RuntimeError("boom")

                monkeypatch.setattr(peer_module, "apply_config", broken)
                since = len(client.messages)
                client.send({"type": "config", "style": "tint"})
                error = await client.wait_message("error", since=since)
                assert error["message"] == "control message not handled (RuntimeError); settings unchanged"
                assert peer.pipeline.settings.style == "invert"
            finally:
                await client.close()
            for _ in range(100):  # the connection's close ends the peer
                if not app[PEERS]:
                    break
                await asyncio.sleep(0.05)
            assert app[PEERS] == set()

    run(go(), timeout=40)


@pytest.mark.parametrize("state, connected, closes", [
    ("new", False, False), ("connecting", False, False), ("connected", True, False), ("failed", False, True), ("closed", False, True)])
def test_the_connection_state_marks_a_peer_connected_or_ends_it(tiny_zoo, monkeypatch, state, connected, closes):
    async def go():
        async with lone_peer(tiny_zoo) as (peer, closed):
            monkeypatch.setattr(RTCPeerConnection, "connectionState", property(lambda pc: state))
            await peer._on_state()
            assert (peer.connected_at is not None, peer._closing is not None) == (connected, closes)
            monkeypatch.undo()
            await peer.close()
            assert closed == [peer]

    run(go())


class CountedAudio(AudioStreamTrack):
    reads = 0

    async def recv(self):
        self.reads += 1
        return await super().recv()


def test_a_track_is_drained_until_it_ends_quietly():
    """Audio (or a second video) is read as it comes, so nothing queues, until the track ends:
    its MediaStreamError ends the drain and nothing escapes."""
    async def go():
        track = CountedAudio()  # 20 ms a frame
        drain = asyncio.create_task(Peer._drain(track))
        await asyncio.sleep(0.2)
        track.stop()
        await asyncio.wait_for(drain, 2)
        assert track.reads >= 5

    run(go())


@pytest.mark.parametrize("state, sent", [("connecting", False), ("open", True), ("closing", False), ("closed", False), (None, False)])
def test_messages_go_only_down_an_open_channel(tiny_zoo, state, sent):
    async def go():
        async with lone_peer(tiny_zoo) as (peer, _):
            got: list[str] = []
            peer.channel = None if state is None else SimpleNamespace(readyState=state, send=got.append)
            peer._send({"type": "stats"})
            assert got == (['{"type": "stats"}'] if sent else [])
            await peer.close()

    run(go())


def test_a_transport_that_fails_to_close_still_ends_the_peer(tiny_zoo):
    async def go():
        async with lone_peer(tiny_zoo) as (peer, closed):
            real = peer.pc.close

            async def broken():
                raise RuntimeError("stuck transport")

            peer.pc.close = broken  # type: ignore[method-assign]
            await peer.close()
            assert closed == [peer] and peer.pipeline.closed
            await real()

    run(go())
