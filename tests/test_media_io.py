"""Video sources and sinks on their own, fast, on small files made here: what a spec names,
the container a target gets, an unknown codec found first, a file through source and sink
with its sound copied in sync, timestamps that never go back, odd sizes, a file that appears
only once complete, and the newest-frame reader; test_stylize_live drives cameras, pipes
and network streams through them."""

from __future__ import annotations

import fractions
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from stylecam.server.media_io import (
    AUDIO_LEAD,
    MediaError,
    NewestFrame,
    Sink,
    camera_device,
    check_encoder,
    has_protocol,
    is_stream,
    open_source,
    sink_format,
    stream_name,
    yuv420p_or_native,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("spec, camera, stream, name", [
    ("0", "/dev/video0", True, "0"),
    ("/dev/video2", "/dev/video2", True, "video2"),
    ("-", None, True, "stdin"),
    ("rtsp://cam.local:554/live/main?user=x", None, True, "main"),
    ("srt://host:9000", None, True, "host"),
    ("http://host/", None, True, "host"),
    ("rtmp://", None, True, "rtmp"),
    ("clips/holiday.mp4", None, False, "holiday.mp4"),
    ("12a", None, False, "12a"),
])
def test_what_a_spec_names(spec, camera, stream, name):
    assert (camera_device(spec), is_stream(spec), stream_name(spec)) == (camera, stream, name)


@pytest.mark.parametrize("target, fmt", [
    ("-", "mpegts"), ("rtmp://host/app/key", "flv"), ("RTMPS://host/app/key", "flv"), ("srt://host:9000", "mpegts"),
    ("udp://host:9000", "mpegts"), ("tcp://host:9000", "mpegts"), ("rtsp://host/x", "rtsp"), ("out.mkv", None), ("out", "mp4"),
])
def test_the_container_each_target_gets(target, fmt):
    assert sink_format(target) == fmt


def test_a_target_that_cannot_be_sent_to_and_an_unknown_codec_are_one_line_errors():
    with pytest.raises(MediaError, match=r"^--out http://host/x: cannot send to http://; use rtmp://, srt://, a file or - \(stdout\)$"):
        sink_format("http://host/x")
    with pytest.raises(MediaError, match=r"^--codec nosuch: no such encoder in this FFmpeg; try libx264"):
        check_encoder("nosuch")
    with pytest.raises(MediaError, match=r"^--codec aac: a audio encoder, not a video one$"):
        check_encoder("aac")
    check_encoder("libx264")
    assert has_protocol("rtmp") and not has_protocol("nosuchprotocol")


def make_clip(path: Path, frames: int = 12, size: tuple[int, int] = (64, 48), audio: bool = True, video: bool = True) -> None:
    """A short MP4: frames of grey ``10 * i`` at 10 fps, and 1.2 s of AAC sound."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=10) if video else None
        if v is not None:
            v.width, v.height, v.pix_fmt = *size, "yuv420p"
        a = out.add_stream("aac", rate=16000) if audio else None
        if v is not None:
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 10 * i, np.uint8), format="rgb24")
                frame.pts = i
                out.mux(v.encode(frame))
            out.mux(v.encode(None))
        if a is not None:
            for i in range(frames * 2):
                samples = np.zeros((1, 800), np.float32)
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, i * 800
                out.mux(a.encode(chunk))
            out.mux(a.encode(None))


def test_a_file_goes_through_with_its_sound_and_appears_only_once_complete(tmp_path):
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(clip)
    source = open_source(str(clip), 5.0)
    assert (source.live, source.rate, source.frames, len(source.audio)) == (False, 10, 12, 1)
    sink = Sink(str(out), source, None, None, 5.0)
    frames = audio = 0
    for item in source.items():
        if isinstance(item, av.VideoFrame):
            sink.write(255 - item.to_ndarray(format="rgb24"), item.pts)
            frames += 1
            assert not out.exists()  # staged under another name until closed
        else:
            sink.copy(item)
            audio += 1
    sink.close()
    source.close()
    assert frames == 12 and audio > 0 and sorted(tmp_path.iterdir()) == sorted([clip, out])
    with av.open(str(out)) as done:
        assert done.streams.video[0].codec_context.name == "h264" and done.streams.audio[0].codec_context.name == "aac"
        pictures = [f.to_ndarray(format="rgb24") for f in done.decode(video=0)]
        assert len(pictures) == 12 and abs(float(pictures[3].mean()) - (255 - 30)) < 4
    with av.open(str(out)) as done:
        assert sum(p.dts is not None for p in done.demux(done.streams.audio[0])) == audio  # every packet copied


def test_an_aborted_file_leaves_nothing_and_an_odd_size_is_cut_to_even(tmp_path):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=3, audio=False)
    source = open_source(str(clip), 5.0)
    sink = Sink(str(tmp_path / "odd.mkv"), source, "libx264", None, 5.0)
    sink.write(np.zeros((47, 63, 3), np.uint8), None)
    sink.close()
    with av.open(str(tmp_path / "odd.mkv")) as done:
        assert (done.streams.video[0].width, done.streams.video[0].height) == (62, 46)
    sink = Sink(str(tmp_path / "gone.mp4"), source, None, None, 5.0)
    sink.write(np.zeros((48, 64, 3), np.uint8), None)
    sink.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "odd.mkv"]
    source.close()


def test_timestamps_never_go_back_and_a_missing_one_is_the_next_frame(tmp_path):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=3, audio=False)
    source = open_source(str(clip), 5.0)
    sink = Sink(str(tmp_path / "out.mkv"), source, None, None, 5.0)
    tick = round(1 / (source.rate * source.video.time_base))
    written = []
    for pts in (None, None, 5 * tick, 5 * tick, 2, None):
        sink.write(np.zeros((48, 64, 3), np.uint8), pts)
        written.append(sink._last_pts)
    sink.close()
    source.close()
    assert written == [0, tick, 5 * tick, 5 * tick + 1, 5 * tick + 2, 6 * tick + 2]


def test_sound_from_before_the_first_picture_is_dropped_but_a_short_lead(tmp_path):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=12)
    source = open_source(str(clip), 5.0)
    packets = [item for item in source.items() if isinstance(item, av.Packet)]
    sink = Sink(str(tmp_path / "out.mp4"), source, None, None, 5.0)
    for packet in packets:
        sink.copy(packet)
    kept: list[av.Packet] = []
    copy = sink.copy
    sink.copy = lambda packet: (kept.append(packet), copy(packet))  # type: ignore[method-assign]
    start = 0.5  # seconds: the first styled frame
    sink.write(np.zeros((48, 64, 3), np.uint8), round(start / source.video.time_base))
    sink.close()
    source.close()
    times = [float(p.pts * p.time_base) for p in packets]
    assert [float(p.pts * p.time_base) for p in kept] == [t for t in times if t >= start - AUDIO_LEAD]
    assert 0 < len(kept) < len(packets)


def test_sources_that_cannot_be_read_are_one_line_errors(tmp_path):
    with pytest.raises(MediaError, match=r"^.*missing\.mp4: "):
        open_source(str(tmp_path / "missing.mp4"), 1.0)
    sound = tmp_path / "sound.mp4"
    make_clip(sound, video=False)
    with pytest.raises(MediaError, match=r"sound\.mp4: has no video stream$"):
        open_source(str(sound), 1.0)
    with pytest.raises(MediaError, match=r"^7: no camera /dev/video7: "):
        open_source("7", 1.0)


def test_the_encoder_gets_yuv420p_unless_it_cannot_take_it(tmp_path):
    with av.open(str(tmp_path / "x.mov"), "w") as out:
        assert yuv420p_or_native(out.add_stream("libx264", rate=10)) == "yuv420p"
        assert yuv420p_or_native(out.add_stream("png", rate=10)) == "rgb24"


def frame(value: int) -> av.VideoFrame:
    f = av.VideoFrame.from_ndarray(np.full((8, 8, 3), value, np.uint8), format="rgb24")
    f.pts, f.time_base = value, fractions.Fraction(1, 10)
    return f


def test_the_reader_keeps_the_newest_frame_and_every_sound_packet():
    gate = threading.Event()

    def items():
        for i in range(5):
            yield frame(i)
        yield av.Packet(b"sound")
        gate.wait(5)
        yield frame(9)

    reader = NewestFrame(items())
    time.sleep(0.2)
    got = iter(reader)
    first = [next(got), next(got)]
    assert isinstance(first[0], av.Packet) and first[1].pts == 4 and reader.dropped == 4
    gate.set()
    rest = list(got)
    assert [f.pts for f in rest] == [9] and reader.error is None


def test_the_reader_keeps_a_source_error_and_stops_when_asked():
    def broken():
        yield frame(1)
        raise MediaError("in.mp4: Invalid data found when processing input")

    reader = NewestFrame(broken())
    assert [f.pts for f in reader] == [1] and reader.error == "in.mp4: Invalid data found when processing input"

    def endless():
        i = 0
        while True:
            time.sleep(0.01)
            i += 1
            yield frame(i % 200)

    reader = NewestFrame(endless())
    time.sleep(0.1)
    assert reader.stop(2) and reader.error is None
