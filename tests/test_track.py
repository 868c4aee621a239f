"""The two tracks on their own, fast: the newest frame wins (replaced frames count as
dropped, nothing queues), the styled frame keeps the incoming pts and time base, a failing
stage passes the frame on and says why, and an ended camera ends the styled track;
test_server_track and test_server_stream drive them through real pipelines and peers."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from conftest import run

from stylecam.server.track import NewestFrame, StyledTrack

CLOCK = fractions.Fraction(1, 1000)  # not aiortc's 90 kHz default, so a lost time base shows


def frame(pts: int, value: int = 90) -> av.VideoFrame:
    f = av.VideoFrame.from_ndarray(np.full((16, 16, 3), value, np.uint8), format="rgb24")
    f.pts, f.time_base = pts, CLOCK
    return f


class Camera(MediaStreamTrack):
    """A remote track fed by the test: ``send`` a frame (or an audio frame), ``end`` it."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue = asyncio.Queue()

    def send(self, item: av.VideoFrame | av.AudioFrame | None) -> None:
        self.queue.put_nowait(item)

    def end(self) -> None:
        self.send(None)

    async def recv(self) -> av.VideoFrame:
        item = await self.queue.get()
        if item is None:
            raise MediaStreamError
        return item


class Stage:
    """A pipeline stand-in: returns a new frame ``value`` brighter, or raises ``error``."""

    def __init__(self, error: Exception | None = None, same: bool = False) -> None:
        self.error, self.same = error, same
        self.seen: list[int] = []
        self.reports: list[str] = []

    async def process(self, f: av.VideoFrame) -> av.VideoFrame:
        self.seen.append(f.pts)
        if self.error is not None:
            raise self.error
        if self.same:
            return f
        return av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24") + 1, format="rgb24")

    def report(self, message: str) -> None:
        self.reports.append(message)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_the_newest_frame_wins_and_replaced_ones_count_as_dropped():
    async def go():
        camera = Camera()
        newest = NewestFrame(camera)
        assert (newest.frames_in, newest.dropped, newest.last_frame_at, newest.ended) == (0, 0, None, False)
        before = time.monotonic()
        for pts in (1, 2, 3):
            camera.send(frame(pts))
        await settle()
        assert (newest.frames_in, newest.dropped) == (3, 2)
        assert before <= newest.last_frame_at <= time.monotonic()
        assert (await newest.get()).pts == 3
        camera.send(frame(4))
        await settle()
        assert (newest.frames_in, newest.dropped) == (4, 2)  # the frame taken was not replaced
        assert (await newest.get()).pts == 4
        newest.stop()

    run(go())


def test_get_waits_for_a_frame_and_audio_is_skipped():
    async def go():
        camera = Camera()
        newest = NewestFrame(camera)
        waiting = asyncio.ensure_future(newest.get())
        await settle()
        assert not waiting.done()
        camera.send(av.AudioFrame(format="s16", layout="mono", samples=160))
        await settle()
        assert not waiting.done() and newest.frames_in == 0
        camera.send(frame(7))
        assert (await asyncio.wait_for(waiting, 2)).pts == 7
        second = asyncio.ensure_future(newest.get())  # taken frames are not given twice
        await settle()
        assert not second.done()
        camera.send(frame(8))
        assert (await asyncio.wait_for(second, 2)).pts == 8
        newest.stop()

    run(go())


def test_the_last_frame_is_given_before_the_end_then_every_get_raises():
    async def go():
        camera = Camera()
        newest = NewestFrame(camera)
        camera.send(frame(5))
        camera.end()
        await settle()
        assert newest.ended
        assert newest._task.done() and newest._task.exception() is None  # the end is not an error left unretrieved
        assert (await newest.get()).pts == 5
        for _ in range(2):
            with pytest.raises(MediaStreamError):
                await asyncio.wait_for(newest.get(), 2)

    run(go())


def test_a_waiting_get_wakes_with_an_error_when_the_camera_ends_or_is_stopped():
    async def go():
        for finish in ("end", "stop"):
            camera = Camera()
            newest = NewestFrame(camera)
            waiting = asyncio.ensure_future(newest.get())
            await settle()
            if finish == "end":
                camera.end()
            else:
                newest.stop()
                assert newest.ended  # at once, before the reader has seen its cancellation
            with pytest.raises(MediaStreamError):
                await asyncio.wait_for(waiting, 2)
            assert newest.ended
        camera = Camera()
        newest = NewestFrame(camera)
        newest.stop()
        await settle()
        camera.send(frame(1))  # a stopped reader takes nothing more
        await settle()
        assert newest.frames_in == 0 and camera.queue.qsize() == 1

    run(go())


def test_the_styled_frame_keeps_the_incoming_pts_and_time_base():
    async def go():
        camera, stage = Camera(), Stage()
        track = StyledTrack(NewestFrame(camera), stage)
        assert track.kind == "video" and track.frames_out == 0
        camera.send(frame(3000, value=10))
        out = await asyncio.wait_for(track.recv(), 2)
        assert (out.pts, out.time_base, track.frames_out, stage.seen) == (3000, CLOCK, 1, [3000])
        assert int(out.to_ndarray(format="rgb24").max()) == 11  # the stage's frame, not the camera's
        camera.send(frame(6000))
        assert (await asyncio.wait_for(track.recv(), 2)).pts == 6000
        assert track.frames_out == 2 and stage.reports == []
        track.stop()

    run(go())


def test_a_frame_the_stage_returns_unchanged_keeps_its_own_timing():
    async def go():
        camera = Camera()
        track = StyledTrack(NewestFrame(camera), Stage(same=True))
        sent = frame(42)
        camera.send(sent)
        out = await asyncio.wait_for(track.recv(), 2)
        assert out is sent and (out.pts, out.time_base) == (42, CLOCK)
        track.stop()

    run(go())


def test_a_failing_stage_passes_the_frame_on_and_says_why():
    async def go():
        camera, stage = Camera(), Stage(error=ValueError("bad shape"))
        track = StyledTrack(NewestFrame(camera), stage)
        sent = frame(9)
        camera.send(sent)
        out = await asyncio.wait_for(track.recv(), 2)
        assert out is sent and out.pts == 9 and track.frames_out == 1
        assert stage.reports == ["processing failed (ValueError: bad shape); frames pass through"]
        assert track.readyState == "live"
        track.stop()

    run(go())


def test_an_ended_camera_ends_the_styled_track_and_a_stopped_track_takes_nothing():
    async def go():
        camera, stage = Camera(), Stage()
        track = StyledTrack(NewestFrame(camera), stage)
        camera.end()
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(track.recv(), 2)
        assert track.readyState == "ended"
        camera, stage = Camera(), Stage()
        track = StyledTrack(NewestFrame(camera), stage)
        camera.send(frame(1))
        await settle()
        track.stop()
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(track.recv(), 2)
        assert stage.seen == [] and track.frames_out == 0

    run(go())
