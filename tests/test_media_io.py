"""Video sources and sinks on their own, fast, on small files made here: what a spec names,
the container a target gets, an unknown codec found first, a file through source and sink
with its sound copied in sync, timestamps that never go back, odd sizes, a file that appears
only once complete, and the newest-frame reader; test_stylize_live drives cameras, pipes
and network streams through them."""

from __future__ import annotations

import contextlib
import fractions
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from stylecam.server.images import staging_path
from stylecam.server.media_io import (
    AUDIO_LEAD,
    LiveReader,
    MediaError,
    Relay,
    Sink,
    Source,
    camera_device,
    check_encoder,
    has_protocol,
    is_stream,
    open_container,
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
    ("+clip.mp4", None, False, "+clip.mp4"),  # sorts before "-": a file all the same
    ("", None, False, "stream"),
])
def test_what_a_spec_names(spec, camera, stream, name):
    assert (camera_device(spec), is_stream(spec), stream_name(spec)) == (camera, stream, name)


@pytest.mark.parametrize("target, fmt", [
    ("-", "mpegts"), ("rtmp://host/app/key", "flv"), ("RTMPS://host/app/key", "flv"), ("srt://host:9000", "mpegts"),
    ("udp://host:9000", "mpegts"), ("tcp://host:9000", "mpegts"), ("rtsp://host/x", "rtsp"), ("out.mkv", None), ("out", "mp4"),
    ("+out", "mp4"),
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


def test_a_sink_given_no_frame_says_so_and_leaves_nothing(tmp_path):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=3, audio=False)
    source = open_source(str(clip), 5.0)
    sink = Sink(str(tmp_path / "empty.mp4"), source, "mpeg4", None, 5.0)
    with pytest.raises(MediaError, match=r"empty.mp4: no frames to write \(the source gave none\); nothing written"):
        sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    source.close()


def test_an_aborted_file_leaves_nothing_and_an_odd_size_is_cut_to_even(tmp_path):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=3, audio=False)
    source = open_source(str(clip), 5.0)
    sink = Sink(str(tmp_path / "odd.mkv"), source, "libx264", None, 5.0)
    sink.write(np.zeros((47, 63, 3), np.uint8), None)
    sink.close()
    with av.open(str(tmp_path / "odd.mkv")) as done:
        assert (done.streams.video[0].width, done.streams.video[0].height) == (62, 46)
    sink = Sink(str(tmp_path / "gone.mp4"), source, "mpeg4", None, 5.0)  # MPEG-4 part 2 muxes each frame at once
    sink.write(np.zeros((48, 64, 3), np.uint8), None)
    assert staging_path(tmp_path / "gone.mp4").is_file()
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
    missing = str(tmp_path / "missing.mp4")
    with pytest.raises(MediaError, match=f"^{re.escape(missing)}: No such file or directory$"):
        open_source(missing, 1.0)
    sound = tmp_path / "sound.mp4"
    make_clip(sound, video=False)
    with pytest.raises(MediaError, match=r"sound\.mp4: has no video stream$"):
        open_source(str(sound), 1.0)
    with pytest.raises(MediaError, match=r"^7: no camera /dev/video7: No such file or directory$"):
        open_source("7", 1.0)
    with pytest.raises(MediaError, match=r"^/dev/video99: No such file or directory$"):  # the device path itself is not repeated
        open_source("/dev/video99", 1.0)


def test_the_encoder_gets_yuv420p_unless_it_cannot_take_it(tmp_path):
    with av.open(str(tmp_path / "x.mov"), "w") as out:
        assert yuv420p_or_native(out.add_stream("libx264", rate=10)) == "yuv420p"
        assert yuv420p_or_native(out.add_stream("png", rate=10)) == "rgb24"
        assert yuv420p_or_native(out.add_stream("mjpeg", rate=10)) == "yuv420p"  # not its first (yuvj420p), but it takes it
        assert yuv420p_or_native(out.add_stream("rawvideo", rate=10)) == "yuv420p"  # lists none: takes any


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

    reader = LiveReader(items())
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

    reader = LiveReader(broken())
    assert [f.pts for f in reader] == [1] and reader.error == "in.mp4: Invalid data found when processing input"

    def endless():
        i = 0
        while True:
            time.sleep(0.01)
            i += 1
            yield frame(i % 200)

    reader = LiveReader(endless())
    time.sleep(0.1)
    assert reader.stop(2) and reader.error is None


def test_a_file_that_sorts_before_stdin_is_read_and_written_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_clip(Path("+in.mp4"), frames=3, audio=False)
    source = open_source("+in.mp4", 5.0)
    sink = Sink("+out.mp4", source, None, None, 5.0)
    for item in source.items():
        sink.write(item.to_ndarray(format="rgb24"), item.pts)
    sink.close()
    source.close()
    with av.open("+out.mp4") as done:
        assert len(list(done.decode(video=0))) == 3


def test_the_first_video_stream_is_the_one_read(tmp_path):
    clip = tmp_path / "two.mkv"
    with av.open(str(clip), "w") as out:
        streams = [out.add_stream("mpeg4", rate=10) for _ in range(2)]
        for v, (width, height) in zip(streams, ((64, 48), (32, 24))):
            v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        for v in streams:
            out.mux(v.encode(av.VideoFrame.from_ndarray(np.zeros((v.height, v.width, 3), np.uint8), format="rgb24")))
            out.mux(v.encode(None))
    source = open_source(str(clip), 5.0)
    assert (source.video.index, source.video.width, source.video.height) == (0, 64, 48)
    source.close()


def stand_in(time_base, average=None, guessed=None) -> Source:
    """A source whose video stream tells only a time base and rates (a camera or a pipe may
    know no more); what a sink reads of it."""
    video = SimpleNamespace(time_base=time_base, average_rate=average, guessed_rate=guessed)
    return Source("-", None, video, [])  # type: ignore[arg-type]


@pytest.mark.parametrize("average, guessed, rate", [
    (fractions.Fraction(25), fractions.Fraction(24), 25), (None, fractions.Fraction(24), 24), (None, None, 30),
])
def test_the_frame_rate_is_the_average_else_the_guess_else_30(average, guessed, rate):
    assert stand_in(None, average, guessed).rate == rate


@pytest.mark.parametrize("time_base, rate, tick", [
    (None, 25, fractions.Fraction(1, 25)),  # no time base: one frame is the unit
    (fractions.Fraction(1, 1000), 24, fractions.Fraction(42, 1000)),  # 41.67 ms, rounded to the nearest
    (fractions.Fraction(1, 10), 25, fractions.Fraction(1, 10)),  # a frame shorter than the unit: at least one unit on
])
def test_a_frame_without_a_time_comes_one_frame_after_the_last(tmp_path, time_base, rate, tick):
    out = tmp_path / "out.mkv"
    sink = Sink(str(out), stand_in(time_base, fractions.Fraction(rate)), None, None, 5.0)
    assert sink._video.codec_context.time_base == (time_base or fractions.Fraction(1, rate))
    for _ in range(3):
        sink.write(np.zeros((48, 64, 3), np.uint8), None)
    sink.close()
    with av.open(str(out)) as done:
        assert [f.time for f in done.decode(video=0)] == pytest.approx([0, float(tick), float(2 * tick)])


def test_the_container_is_the_one_asked_for_else_mp4_for_a_file_without_a_suffix(tmp_path):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=2, audio=False)
    source = open_source(str(clip), 5.0)
    for name, fmt, expected in (("plain", None, "mov,mp4,m4a,3gp,3g2,mj2"), ("odd.mp4", "matroska", "matroska,webm")):
        sink = Sink(str(tmp_path / name), source, None, fmt, 5.0)
        for _ in range(2):
            sink.write(np.zeros((48, 64, 3), np.uint8), None)
        sink.close()
        with av.open(str(tmp_path / name)) as done:
            assert done.format.name == expected
    source.close()


@pytest.mark.parametrize("codec, suffix", [("png", ".nut"), ("v408", ".nut")])  # rgb24 and yuva444p: sort before and after yuv420p
def test_only_a_yuv420p_picture_is_cut_to_even_sides(tmp_path, codec, suffix):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=2, audio=False)
    source = open_source(str(clip), 5.0)
    sizes = {}
    for name, use in (("even.mkv", None), ("odd" + suffix, codec)):
        sink = Sink(str(tmp_path / name), source, use, None, 5.0)
        sink.write(np.zeros((48, 64, 3), np.uint8) if use is None else np.zeros((47, 63, 3), np.uint8), None)
        sink.close()
        with av.open(str(tmp_path / name)) as done:
            sizes[name] = (done.streams.video[0].width, done.streams.video[0].height)
    source.close()
    assert sizes == {"even.mkv": (64, 48), "odd" + suffix: (63, 47)}


def test_sound_from_exactly_the_lead_before_the_picture_is_kept_and_so_is_sound_without_a_time(tmp_path):
    clip = tmp_path / "in.mkv"  # Matroska: milliseconds for sound and picture alike, so times can meet exactly
    make_clip(clip, frames=12)
    source = open_source(str(clip), 5.0)
    packets = [item for item in source.items() if isinstance(item, av.Packet)]
    at = next(p for p in packets if p.pts > 100)
    start = at.pts + round(AUDIO_LEAD / source.video.time_base)
    assert float(start * source.video.time_base) - AUDIO_LEAD == float(at.pts * at.time_base)  # exactly the lead before
    timeless = packets[2]
    timeless_dts, timeless.pts = timeless.dts, None
    sink = Sink(str(tmp_path / "out.mkv"), source, None, None, 5.0)
    for packet in packets:
        sink.copy(packet)
    sink.write(np.zeros((48, 64, 3), np.uint8), start)
    sink.close()
    source.close()
    with av.open(str(tmp_path / "out.mkv")) as done:
        kept = [p.dts for p in done.demux(done.streams.audio[0]) if p.dts is not None]
    assert kept == [timeless_dts] + [p.dts for p in packets if p.dts >= at.dts]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_file_that_cannot_be_finished_is_deleted(tmp_path):
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_clip(clip, frames=3, audio=False)
    source = open_source(str(clip), 5.0)
    staging_path(out).symlink_to("/dev/full")  # the disk is full under the sink's feet
    sink = Sink(str(out), source, "mpeg4", None, 5.0)
    for _ in range(3):
        sink.write(np.zeros((48, 64, 3), np.uint8), None)
    with pytest.raises(MediaError, match=f"^{re.escape(str(out))}: No space left on device$"):
        sink.close()
    source.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_the_reader_hands_each_item_on_as_soon_as_it_comes():
    taken = threading.Semaphore(0)

    def items():
        for i in range(5):
            yield frame(i)
            taken.acquire(timeout=5)
        for _ in range(5):
            yield av.Packet(b"sound")
            taken.acquire(timeout=5)

    began = time.monotonic()
    got = []
    for item in LiveReader(items()):  # one item at a time: the next comes once this one is taken
        got.append(item)
        taken.release()
    assert time.monotonic() - began < 1.5  # not half a second (the reader's wake-up period) an item
    assert [f.pts for f in got[:5]] == [0, 1, 2, 3, 4] and all(isinstance(p, av.Packet) for p in got[5:]) and len(got) == 10


def test_a_stalled_source_is_waited_for_without_spinning_and_without_ending():
    def stalling():
        yield frame(1)
        time.sleep(0.7)  # longer than the reader's wake-up period
        yield frame(2)

    reader = LiveReader(stalling())
    readers = [t.daemon for t in threading.enumerate() if t.name == "stylize-reader"]
    assert readers and all(readers)  # a stuck read never holds the process at exit
    cpu = time.thread_time()
    assert [f.pts for f in reader] == [1, 2]
    assert time.thread_time() - cpu < 0.15


def test_each_protocol_is_asked_about_once_and_briefly():
    has_protocol.cache_clear()
    began = time.monotonic()
    assert has_protocol("udp")  # a read of 127.0.0.1:9 that nothing sends to: given up on after its open timeout
    assert time.monotonic() - began < 1
    assert has_protocol("udp")
    assert (has_protocol.cache_info().misses, has_protocol.cache_info().hits) == (1, 1)


@pytest.fixture
def ffmpeg(tmp_path, monkeypatch) -> Path:
    """A stand-in ``ffmpeg``, alone on PATH: it writes its arguments, one a line, to
    ``ffmpeg.args`` beside it, then runs the shell line in $FAKE_FFMPEG (set per test: what
    the real one would do with its pipes)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "ffmpeg"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$0.args"\nPATH=/usr/bin:/bin\neval "$FAKE_FFMPEG"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setenv("FAKE_FFMPEG", "")
    return script


def said(script: Path) -> list[str] | None:
    """The arguments the stand-in ffmpeg was given, or None if it never ran."""
    args = script.with_name("ffmpeg.args")
    return args.read_text().splitlines() if args.is_file() else None


def children() -> set[int]:
    """This process's child processes, ended ones not yet waited for included."""
    me, found = str(os.getpid()), set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (proc / "stat").read_text()
                if stat[stat.rindex(")") + 2:].split()[1] == me:  # pid (name) state ppid ...
                    found.add(int(proc.name))
    return found


PROBE = ["-nostdin", "-hide_banner", "-loglevel", "error", "-probesize", "500000", "-analyzeduration", "500000"]


@pytest.mark.parametrize("url, send, given", [
    ("srt://h:9000", True, "srt://h:9000?linger=2"),  # a sender keeps its tail: SRT's live mode drops it at close
    ("srt://h:9000?mode=caller", True, "srt://h:9000?mode=caller&linger=2"),
    ("srt://h:9000?linger=5", True, "srt://h:9000?linger=5"),
    ("udp://h:9000", True, "udp://h:9000"),
    ("srt://h:9000", False, "srt://h:9000"),
])
def test_the_relay_copies_packets_between_the_url_and_a_pipe(ffmpeg, url, send, given):
    relay = Relay(url, send)
    pipe = relay.process.stdin if send else relay.process.stdout
    assert pipe is not None and relay.url == f"pipe:{pipe.fileno()}"
    assert (relay.process.stdin is None, relay.process.stdout is None) == (not send, send)
    relay.close(5)
    assert relay.process.returncode == 0
    copy = ["-map", "0", "-c", "copy"]
    assert said(ffmpeg) == ([*PROBE, "-f", "mpegts", "-i", "pipe:0", *copy, "-f", "mpegts", given] if send
                            else [*PROBE, "-i", given, *copy, "-flush_packets", "1", "-f", "mpegts", "pipe:1"])


def test_what_the_relay_said_before_it_ended_and_a_relay_that_will_not_end_is_killed(ffmpeg, monkeypatch):
    monkeypatch.setenv("FAKE_FFMPEG", "echo one >&2; echo two >&2; echo 'srt://h:9: Connection refused' >&2; exit 1")
    relay = Relay("srt://h:9", False)
    relay.process.wait(5)
    assert relay.problem() == " (ffmpeg relay: srt://h:9: Connection refused)"
    relay.close(5)
    monkeypatch.setenv("FAKE_FFMPEG", "exit 1")
    quiet = Relay("srt://h:9", False)
    quiet.process.wait(5)
    assert quiet.problem() == ""
    quiet.close(5)
    monkeypatch.setenv("FAKE_FFMPEG", "echo working >&2; exec sleep 5")
    busy = Relay("srt://h:9", True)
    assert busy.problem() == ""  # still going: nothing to say yet, and no wait for it
    busy.close(0.2)
    assert busy.process.returncode == -signal.SIGKILL


def test_without_ffmpeg_a_protocol_pyav_lacks_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MediaError, match=r"^nosuch://host/x: Protocol not found in PyAV's FFmpeg \(its wheels have no SRT\), "
                                         r"and no ffmpeg command on PATH to relay it \(apt-get install ffmpeg\)$"):
        open_source("nosuch://host/x", 1.0)
    with pytest.raises(FileNotFoundError, match="ffmpeg"):
        Relay("srt://h:9000", True)


def test_a_spec_that_is_no_url_is_never_relayed(ffmpeg):
    with pytest.raises(MediaError, match=r"^abc:def: Protocol not found"):
        open_source("abc:def", 1.0)
    assert said(ffmpeg) is None


def test_a_url_pyav_cannot_read_is_read_through_ffmpeg(tmp_path, ffmpeg, monkeypatch):
    clip = tmp_path / "in.ts"
    make_clip(clip, frames=6)
    monkeypatch.setenv("FAKE_FFMPEG", f'exec cat "{clip}"')
    source = open_source("srt://127.0.0.1:9000", 5.0)
    assert source.relay is not None and source.live
    items = list(source.items())
    source.close()
    assert sum(isinstance(i, av.VideoFrame) for i in items) == 6 and any(isinstance(i, av.Packet) for i in items)
    assert said(ffmpeg) == [*PROBE, "-i", "srt://127.0.0.1:9000", "-map", "0", "-c", "copy", "-flush_packets", "1", "-f", "mpegts", "pipe:1"]
    assert source.relay.process.returncode == 0


def test_an_error_through_the_relay_says_what_ffmpeg_said(ffmpeg, monkeypatch):
    monkeypatch.setenv("FAKE_FFMPEG", "echo 'srt://127.0.0.1:9000: Connection refused' >&2; exit 1")
    before = children()
    with pytest.raises(MediaError, match=r"^srt://127\.0\.0\.1:9000: .+ \(ffmpeg relay: srt://127\.0\.0\.1:9000: Connection refused\)$"):
        open_source("srt://127.0.0.1:9000", 1.0)
    assert children() == before  # the relay ended and waited for


def test_a_target_pyav_cannot_send_to_goes_through_ffmpeg_as_mpegts(tmp_path, ffmpeg, monkeypatch):
    clip, sent = tmp_path / "in.mp4", tmp_path / "sent.ts"
    make_clip(clip, frames=6)
    monkeypatch.setenv("FAKE_FFMPEG", f'exec cat > "{sent}"')
    source = open_source(str(clip), 5.0)
    sink = Sink("srt://127.0.0.1:9000?mode=caller", source, None, None, 5.0)
    for item in source.items():
        if isinstance(item, av.VideoFrame):
            sink.write(item.to_ndarray(format="rgb24"), item.pts)
        else:
            sink.copy(item)
    sink.close()
    source.close()
    assert sink._relay is not None and sink._relay.process.returncode == 0
    assert said(ffmpeg) == [*PROBE, "-f", "mpegts", "-i", "pipe:0", "-map", "0", "-c", "copy", "-f", "mpegts",
                            "srt://127.0.0.1:9000?mode=caller&linger=2"]
    with av.open(str(sent)) as done:
        assert done.format.name == "mpegts" and len(done.streams.audio) == 1 and len(list(done.decode(video=0))) == 6
    out, relay = open_container("srt://127.0.0.1:9000", "srt://127.0.0.1:9000", True, mode="w")  # no format asked for: MPEG-TS
    assert out.format.name == "mpegts" and relay is not None
    out.close()
    relay.close(5)


def test_an_aborted_relay_is_killed_at_once_and_a_sink_that_fails_to_start_leaves_none(tmp_path, ffmpeg, monkeypatch):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=3, audio=False)
    source = open_source(str(clip), 5.0)
    monkeypatch.setenv("FAKE_FFMPEG", "cat > /dev/null; exec sleep 0.5")  # would finish half a second after its input
    sink = Sink("srt://127.0.0.1:9000", source, None, None, 5.0)
    sink.write(np.zeros((48, 64, 3), np.uint8), None)
    sink.abort()
    assert sink._relay is not None and sink._relay.process.returncode == -signal.SIGKILL
    monkeypatch.setenv("FAKE_FFMPEG", "cat > /dev/null")
    before = children()
    with pytest.raises(MediaError, match=r"^srt://127\.0\.0\.1:9000: "):
        Sink("srt://127.0.0.1:9000", source, "nosuch", None, 5.0)
    assert children() == before  # its relay ended and waited for
    source.close()


def test_a_url_pyav_can_send_to_is_sent_directly(tmp_path, ffmpeg):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=6, audio=False)
    source = open_source(str(clip), 5.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        sink = Sink(f"udp://127.0.0.1:{listener.getsockname()[1]}", source, None, None, 5.0)
        for item in source.items():
            sink.write(item.to_ndarray(format="rgb24"), item.pts)
        sink.close()
        listener.settimeout(0.2)
        data = b""
        with contextlib.suppress(TimeoutError):
            while True:
                data += listener.recv(65536)
    source.close()
    assert sink._relay is None and said(ffmpeg) is None
    (tmp_path / "got.ts").write_bytes(data)
    with av.open(str(tmp_path / "got.ts")) as done:
        assert done.format.name == "mpegts" and len(list(done.decode(video=0))) == 6


def test_a_live_sink_does_not_wait_on_the_encoder(tmp_path):
    clip = tmp_path / "in.mp4"
    make_clip(clip, frames=2, audio=False)
    source = open_source(str(clip), 5.0)
    live, file = Sink("udp://127.0.0.1:9", source, None, None, 5.0), Sink(str(tmp_path / "out.mp4"), source, None, None, 5.0)
    x264, x265 = "".join(["libx", "264"]), "".join(["libx", "265"])  # names as given on a command line, not the module's own strings
    quiet = {"x265-params": "log-level=error"}
    for name in ("libx264", x264):
        assert live._options(name, fractions.Fraction(10)) == {"preset": "veryfast", "tune": "zerolatency", "g": "20"}
        assert live._options(name, fractions.Fraction(30000, 1001))["g"] == "60"  # a GOP of 2 s
        assert file._options(name, fractions.Fraction(10)) == {}
    for sink in (live, file):
        assert sink._options("libx265", fractions.Fraction(10)) == sink._options(x265, fractions.Fraction(10)) == quiet
        assert sink._options("libvpx-vp9", fractions.Fraction(10)) == sink._options("mpeg4", fractions.Fraction(10)) == {}
        sink.abort()
    source.close()


def test_a_stalled_stream_gives_up_after_its_timeout(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # accepts, then says nothing
        began = time.monotonic()
        with pytest.raises(MediaError, match=r"^tcp://127\.0\.0\.1:\d+: "):
            open_source(f"tcp://127.0.0.1:{server.getsockname()[1]}", 0.3)
        assert time.monotonic() - began < 3
