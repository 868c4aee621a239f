"""The shared encoder on its own, fast: one libx264 encode per frame for any number of
viewers, each viewer from a keyframe on, a lagging viewer resynchronised on a keyframe,
nothing pulled while nobody watches; test_server_whip drives it through real peers."""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from conftest import run

from stylecam.server import fanout
from stylecam.server.fanout import GOP_FRAMES, MAX_BEHIND, EncodedTrack, SharedEncoder, h264_codecs

CLOCK = fractions.Fraction(1, 1000)  # not aiortc's 90 kHz default, so a lost time base shows


class Frames(MediaStreamTrack):
    """A video source: grey frames with a moving square, of the given sizes (the last one repeats), pts 3000 apart
    on a 1 kHz clock; ``limit`` frames, then the end of the stream."""

    kind = "video"

    def __init__(self, sizes: tuple[tuple[int, int], ...] = ((64, 48),), limit: int = 10_000, fmt: str = "rgb24") -> None:
        super().__init__()
        self.sizes, self.limit, self.fmt, self.pulled = sizes, limit, fmt, 0

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(0.002)
        if self.pulled >= self.limit:
            raise MediaStreamError
        width, height = self.sizes[min(self.pulled, len(self.sizes) - 1)]
        image = np.full((height, width, 3), 90, np.uint8)
        x = self.pulled % (width - 8)
        image[8:16, x:x + 8] = 250  # a small square moving: no scene cut for x264 to make a keyframe of
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        if self.fmt != "rgb24":
            frame = frame.reformat(format=self.fmt)
        frame.pts, frame.time_base = 1000 + 3000 * self.pulled, CLOCK
        self.pulled += 1
        return frame


async def packets(track: EncodedTrack, count: int) -> list[av.Packet]:
    return [await asyncio.wait_for(track.recv(), 10) for _ in range(count)]


def test_nothing_is_pulled_while_nobody_watches_and_it_stops_when_the_last_viewer_leaves():
    async def go():
        source = Frames()
        encoder = SharedEncoder(source)
        await asyncio.sleep(0.1)
        assert (source.pulled, encoder.frames, encoder.viewers) == (0, 0, 0)
        assert (encoder.bytes, encoder.ms, encoder.ended) == (0, 0.0, False)
        one, two = encoder.subscribe(), encoder.subscribe()
        assert encoder.viewers == 2
        await asyncio.gather(packets(one, 3), packets(two, 3))
        one.stop()
        assert encoder.viewers == 1
        await packets(two, 3 * MAX_BEHIND)  # more than it could hold: the encoder goes on for the one left
        two.stop()
        assert encoder.viewers == 0
        await asyncio.sleep(0.05)
        pulled = source.pulled
        await asyncio.sleep(0.2)
        assert source.pulled <= pulled + 1  # at most the frame it was already waiting for
        await encoder.close()

    run(go(), timeout=30)


def test_every_viewer_gets_the_same_packets_each_encoded_once_with_the_publishers_clock():
    async def go():
        source = Frames()
        encoder = SharedEncoder(source)
        viewers = [encoder.subscribe() for _ in range(3)]
        got = await asyncio.gather(*(packets(v, 12) for v in viewers))  # together: none falls behind
        assert got[0][0].is_keyframe and not any(p.is_keyframe for p in got[0][1:])
        assert all([id(p) for p in g] == [id(p) for p in got[0]] for g in got)  # one packet object, shared
        assert encoder.frames == source.pulled or encoder.frames == source.pulled - 1  # the last may be in the encoder
        assert [p.pts for p in got[0]] == [1000 + 3000 * i for i in range(12)] and all(p.dts == p.pts for p in got[0])
        assert all(p.time_base == CLOCK for p in got[0])
        assert encoder.bytes >= sum(p.size for p in got[0]) > 0 and encoder.ms > 0
        await encoder.close()

    run(go(), timeout=30)


def test_a_late_viewer_starts_at_a_keyframe_it_asks_for():
    async def go():
        encoder = SharedEncoder(Frames())
        first = encoder.subscribe()
        early = await packets(first, 5)
        late = encoder.subscribe()
        joined = encoder.frames
        got, _ = await asyncio.gather(packets(late, 3), packets(first, 3))
        assert got[0].is_keyframe and got[0].pts > early[-1].pts  # not the first viewer's old keyframe
        assert got[0].pts <= 1000 + 3000 * (joined + 2), (got[0].pts, joined)  # at once, not at the next GOP
        await encoder.close()

    run(go(), timeout=30)


def test_requests_collapse_and_a_keyframe_comes_every_gop_regardless():
    async def go():
        encoder = SharedEncoder(Frames())
        viewer = encoder.subscribe()
        encoder.request_keyframe()
        encoder.request_keyframe()
        got = await packets(viewer, GOP_FRAMES + 2)
        keyframes = [i for i, p in enumerate(got) if p.is_keyframe]
        assert keyframes == [0, GOP_FRAMES], keyframes
        await encoder.close()

    run(go(), timeout=60)


def test_a_viewer_that_falls_behind_drops_what_it_holds_and_waits_for_a_keyframe():
    async def go():
        source = Frames()
        encoder = SharedEncoder(source)
        slow = encoder.subscribe()
        fast = encoder.subscribe()
        await packets(fast, MAX_BEHIND + 3)  # slow reads nothing meanwhile
        assert slow.resyncs == 1
        got = await packets(slow, 2)
        assert got[0].is_keyframe and got[0].pts > 1000 + 3000 * MAX_BEHIND  # the one its resync asked for
        await encoder.close()

    run(go(), timeout=30)


def test_put_holds_at_most_max_behind_then_skips_to_a_keyframe():
    """The viewer's own rule, packet by packet: nothing before a keyframe; at MAX_BEHIND held,
    the queue empties, a keyframe is asked for and deltas are dropped until it comes."""
    asked = []

    class Encoder:
        def request_keyframe(self) -> None:
            asked.append(True)

    def packet(key: bool) -> av.Packet:
        p = av.Packet(b"\x00" * 10)
        p.is_keyframe = key
        return p

    assert MAX_BEHIND == 8  # about a quarter of a second at 30 fps
    track = EncodedTrack(Encoder(), lambda t: None)
    track.put(packet(False))
    assert len(track._queue) == 0
    track.put(packet(True))
    for _ in range(MAX_BEHIND - 1):
        track.put(packet(False))
    assert len(track._queue) == MAX_BEHIND and track.resyncs == 0 and not asked
    track.put(packet(False))
    assert len(track._queue) == 0 and track.resyncs == 1 and asked == [True]
    track.put(packet(False))
    assert len(track._queue) == 0
    track.put(packet(True))
    assert len(track._queue) == 1 and track.resyncs == 1


def test_odd_sizes_and_other_formats_are_encoded_and_a_new_size_starts_a_keyframe():
    async def go():
        encoder = SharedEncoder(Frames(sizes=((65, 49),) * 3 + ((80, 60),) * 3 + ((64, 48),), fmt="yuvj420p"))
        viewer = encoder.subscribe()
        got = await packets(viewer, 9)
        assert [i for i, p in enumerate(got) if p.is_keyframe] == [0, 3, 6]  # larger, then smaller
        assert (encoder._codec.width, encoder._codec.height) == (64, 48)
        decoder = av.CodecContext.create("h264", "r")
        frames = [f for p in got[:3] for f in decoder.decode(p)]
        assert frames and (frames[0].width, frames[0].height) == (64, 48)  # 4:2:0 needs even sides
        await encoder.close()

    run(go(), timeout=30)


def test_encode_time_is_a_moving_average_from_the_first_frame(monkeypatch):
    """``ms``: the first frame's encode time, then 0.8 of the average and 0.2 of each new one."""
    ticks = iter([0.004, 0.014, 0.020, 0.050])  # 10 ms, then 30 ms
    monkeypatch.setattr(fanout.time, "perf_counter", lambda: next(ticks))

    async def go():
        encoder = SharedEncoder(Frames())
        encoder._encode(await Frames().recv(), True)
        assert encoder.ms == pytest.approx(10.0) and encoder.frames == 1
        (packet,) = encoder._encode(await Frames().recv(), False)
        assert encoder.ms == pytest.approx(0.8 * 10.0 + 0.2 * 30.0) and encoder.frames == 2
        assert packet.time_base == CLOCK
        await encoder.close()

    run(go(), timeout=30)


def test_a_frame_without_a_time_base_is_stamped_on_the_rtp_clock():
    async def go():
        encoder = SharedEncoder(Frames())
        frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
        frame.pts = 1000
        assert frame.time_base is None
        (packet,) = encoder._encode(frame, True)
        assert (packet.pts, packet.time_base) == (1000, fractions.Fraction(1, 90000))
        await encoder.close()

    run(go(), timeout=30)


def test_the_end_of_the_source_ends_every_viewer():
    async def go():
        encoder = SharedEncoder(Frames(limit=4))
        viewers = [encoder.subscribe() for _ in range(2)]
        for v in viewers:
            await packets(v, 4)
            with pytest.raises(MediaStreamError):
                await asyncio.wait_for(v.recv(), 10)
        assert encoder.ended

    run(go(), timeout=30)


def test_a_failed_encode_ends_the_stream_not_the_server(caplog):
    class Broken(Frames):
        async def recv(self):
            await asyncio.sleep(0.002)
            return "not a frame"

    async def go():
        encoder = SharedEncoder(Broken())
        viewer = encoder.subscribe()
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(viewer.recv(), 10)
        assert encoder.ended

    run(go(), timeout=30)
    assert "shared encoder failed; the stream's viewers end" in caplog.text


def test_a_stopped_viewer_gets_nothing_more():
    async def go():
        encoder = SharedEncoder(Frames())
        viewer = encoder.subscribe()
        await packets(viewer, 2)
        viewer.stop()
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(viewer.recv(), 10)
        await encoder.close()

    run(go(), timeout=30)


@pytest.mark.parametrize("size, bitrate", [((640, 480), 921_600), ((160, 120), 500_000), ((3840, 2160), 8_000_000)])
def test_the_encoder_is_baseline_low_latency_with_a_bounded_bitrate(size, bitrate):
    codec = fanout._open_h264(*size)
    assert (codec.width, codec.height, codec.pix_fmt) == (*size, "yuv420p")
    assert codec.bit_rate == bitrate and codec.gop_size == GOP_FRAMES == 60
    assert codec.time_base == fractions.Fraction(1, 30) and codec.framerate == 30
    assert codec.profile == "Baseline" and codec.options == {"preset": "veryfast", "tune": "zerolatency"}


def test_viewers_are_offered_h264_and_its_retransmissions_only():
    types = {c.mimeType.lower() for c in h264_codecs()}
    assert types == {"video/h264", "video/rtx"}
