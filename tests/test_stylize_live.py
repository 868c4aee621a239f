"""``stylecam stylize`` on video as users meet it: H.264 with sound in, H.264 with the same
sound out; pipes; and live RTMP with a real FFmpeg on the other end (127.0.0.1 only)."""

import io
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import needs_tool

from stylecam.cli import main as cli
from stylecam.server import stylize
from stylecam.server.media_io import LiveReader
from stylecam.server.model_card import DEFAULT_ZOO
from stylecam.server.testing.client import free_port

pytestmark = pytest.mark.e2e

MODEL = DEFAULT_ZOO / "multistyle_paint.onnx"  # the fastest shipped style network
FRAMES, RATE, SIZE = 36, 24, (96, 64)
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = needs_tool(FFMPEG is not None, "ffmpeg")  # the RTMP peer


def make_clip(dst: Path | io.BytesIO, fmt: str | None = None) -> None:
    """FRAMES frames of a moving gradient (H.264) and a 440 Hz sine (AAC) of the same length."""
    out = av.open(dst, "w", format=fmt)
    video = out.add_stream("libx264", rate=RATE, options={"preset": "ultrafast"})
    video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
    audio = out.add_stream("aac", rate=48000, layout="mono")
    y, x = np.mgrid[: SIZE[1], : SIZE[0]]
    for i in range(FRAMES):
        rgb = np.stack([(x * 4 + 7 * i) % 256, y * 4, np.full_like(x, 128)], -1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, RATE)
        out.mux(video.encode(frame))
    samples = 48000 * FRAMES // RATE
    pcm = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
    for start in range(0, samples, 1024):
        chunk = av.AudioFrame.from_ndarray(pcm[None, start:start + 1024], format="flt", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = 48000, start, Fraction(1, 48000)
        out.mux(audio.encode(chunk))
    out.mux(video.encode(None))
    out.mux(audio.encode(None))
    out.close()


def probe(src: Path | io.BytesIO) -> dict:
    """Container, video codec/pixel format/frames, and every audio packet as (seconds, seconds, bytes)."""
    with av.open(src) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames, packets, times = [], [], []
        for packet in container.demux(video, audio):
            if packet.stream.type == "video":
                decoded = packet.decode()
                frames += [f.to_ndarray(format="rgb24") for f in decoded]
                times += [float(f.time) for f in decoded if f.time is not None]
            elif packet.size:
                packets.append((float(packet.pts * packet.time_base), float(packet.duration * packet.time_base), bytes(packet)))
        return {"format": container.format.name, "codec": video.codec_context.name, "pix_fmt": video.codec_context.pix_fmt,
                "frames": frames, "times": times, "audio_codec": audio.codec_context.name, "audio": packets}


def sound_spans_picture(got: dict) -> bool:
    """A live recording's sound runs from its first styled frame (sound from before it is
    not kept) to at least its last: nothing in between was lost."""
    start, end = min(got["times"]), max(got["times"])
    heard = sum(p[1] for p in got["audio"])
    first = min(p[0] for p in got["audio"])
    return heard >= end - start - 0.2 and first >= start - 0.2


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    make_clip(path)
    return path


def test_h264_with_audio_in_h264_yuv420p_mp4_out_with_the_audio_copied(clip, tmp_path, capsys):
    out = tmp_path / "styled.mp4"
    assert cli(["stylize", str(clip), "--model", str(MODEL), "--out", str(out)]) == 0
    assert f"{FRAMES} frames" in capsys.readouterr().out
    src, got = probe(clip), probe(out)
    assert "mp4" in got["format"].split(",")
    assert (got["codec"], got["pix_fmt"]) == ("h264", "yuv420p")
    assert len(got["frames"]) == FRAMES
    assert np.abs(got["frames"][5].astype(int) - src["frames"][5].astype(int)).mean() > 10  # styled, not copied
    assert got["audio_codec"] == "aac" and len(src["audio"]) > 50
    assert got["audio"] == src["audio"]  # same packets, bytes, times and durations
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize(("codec", "suffix", "decoded_as"), [("mpeg4", ".mp4", "mpeg4"), ("libx265", ".mkv", "hevc")])
def test_codec_chooses_the_encoder(clip, tmp_path, codec, suffix, decoded_as):
    out = tmp_path / f"styled{suffix}"
    assert cli(["stylize", str(clip), "--model", str(MODEL), "--codec", codec, "--out", str(out)]) == 0
    got, src = probe(out), probe(clip)
    assert got["codec"] == decoded_as and len(got["frames"]) == FRAMES
    assert same_audio(got["audio"], src["audio"])


def same_audio(got: list, src: list) -> bool:
    """The same packets at the same spacing (Matroska shifts the AAC priming packet's
    negative start to 0, and keeps no per-packet durations)."""
    return ([p[2] for p in got] == [p[2] for p in src]
            and np.allclose(np.diff([p[0] for p in got]), np.diff([p[0] for p in src]), atol=1e-3))


def test_odd_sizes_are_cropped_to_even_for_yuv420p(clip, tmp_path):
    out = tmp_path / "odd.mp4"
    assert cli(["stylize", str(clip), "--model", str(MODEL), "--size", "75", "--out", str(out)]) == 0
    assert probe(out)["frames"][0].shape == (50, 74, 3)  # 96x64 at long side 75 is 75x50


@pytest.mark.parametrize(("args", "message"), [
    (["--codec", "h265000"], "no such encoder"),
    (["--codec", "aac"], "not a video one"),
    (["--out", "{tmp}/styled.webm"], "'webm' format does not support 'aac'"),
    (["--out", "ftp://127.0.0.1/x"], "cannot send to ftp://"),
    (["--frames", "0"], "at least 1"),
])
def test_bad_video_options_one_line_nothing_written(clip, tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert cli(["stylize", str(clip), "--model", str(MODEL), "--out", str(tmp_path / "x.mp4"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_missing_camera_is_one_line(tmp_path, capsys):
    assert cli(["stylize", "/dev/video97", "--model", str(MODEL), "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert "/dev/video97: No such file" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_stream_nobody_serves_is_one_line(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        assert cli(["stylize", f"rtmp://127.0.0.1:{port}/live/in", "--model", str(MODEL), "--timeout", "3",
                    "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert f"rtmp://127.0.0.1:{port}/live/in" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_interrupting_a_file_leaves_nothing(clip, tmp_path, monkeypatch):
    styled = stylize.Stylizer.__call__
    calls = []

    def interrupted(self, rgb):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return styled(self, rgb)

    monkeypatch.setattr(stylize.Stylizer, "__call__", interrupted)
    assert cli(["stylize", str(clip), "--model", str(MODEL), "--out", str(tmp_path / "x.mp4")]) == 130
    assert list(tmp_path.iterdir()) == []


def test_newest_frame_wins_and_audio_is_never_dropped(clip):
    with av.open(clip) as container:
        items = [f for p in container.demux() for f in (p.decode() if p.stream.type == "video" else [p] if p.size else [])]
    frames = [i for i in items if isinstance(i, av.VideoFrame)]
    reader = LiveReader(iter(items))
    assert reader.stop(timeout=5)  # the reader ran through everything before anyone took a frame
    taken = list(reader)
    assert [i for i in taken if isinstance(i, av.VideoFrame)] == [frames[-1]]
    assert len(taken) - 1 == len(items) - len(frames)  # every audio packet
    assert reader.dropped == len(frames) - 1


def test_stdin_to_stdout(tmp_path):
    """``-`` in and out: MPEG-TS through pipes, every frame with --all-frames, the audio copied."""
    source = io.BytesIO()
    make_clip(source, "mpegts")
    done = subprocess.run([sys.executable, "-m", "stylecam", "stylize", "-", "--model", str(MODEL),
                           "--all-frames", "--out", "-"], input=source.getvalue(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert f"- -> - ({FRAMES} frames".encode() in done.stderr
    got, src = probe(io.BytesIO(done.stdout)), probe(io.BytesIO(source.getvalue()))
    assert got["format"] == "mpegts" and got["codec"] == "h264" and len(got["frames"]) == FRAMES
    assert same_audio(got["audio"], src["audio"])


def test_ctrl_c_ends_a_live_input_with_its_output_complete(tmp_path):
    """Ctrl-C is how a live recording stops: the file is finished and kept."""
    source = io.BytesIO()
    make_clip(source, "mpegts")
    out = tmp_path / "recorded.mp4"
    run = subprocess.Popen([sys.executable, "-m", "stylecam", "stylize", "-", "--model", str(MODEL),
                            "--timeout", "2", "--out", str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE,  # a terminal's Ctrl-C reaches a foreground job, whose SIGINT is not ignored
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        run.stdin.write(source.getvalue())
        run.stdin.flush()  # and left open: the stream goes on
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".*partial*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(tmp_path.glob(".*partial*")), "the recording never started"
        run.send_signal(signal.SIGINT)
        try:
            code = run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            run.kill()
            pytest.fail(f"stylize did not exit 30 s after Ctrl-C; its stderr: {run.communicate()[1].decode()[-2000:]}")
        assert code == 0, run.stderr.read().decode()
    finally:
        run.kill()
        run.stdin.close()
    assert "stopped by Ctrl-C" in run.stdout.read().decode()
    got = probe(out)
    assert got["codec"] == "h264" and len(got["frames"]) >= 1 and got["audio_codec"] == "aac"
    assert list(tmp_path.iterdir()) == [out]


def wait_listening(port: int, peer: subprocess.Popen, seconds: float = 10, udp: bool = False) -> None:
    """Until ``peer`` listens on ``port`` (TCP, or for SRT a bound UDP port), read from /proc
    (a probe connection would take the one client that ``ffmpeg -listen 1`` accepts)."""
    deadline = time.monotonic() + seconds
    tables, state = (("/proc/net/udp", "/proc/net/udp6"), "07") if udp else (("/proc/net/tcp", "/proc/net/tcp6"), "0A")
    while time.monotonic() < deadline:
        for table in tables:
            lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
            if any(int(f[1].split(":")[1], 16) == port and f[3] == state for f in map(str.split, lines)):
                return
        assert peer.poll() is None, peer.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError(f"ffmpeg did not listen on {port} within {seconds} s")


CLIP_3S = ["-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac"]


def stylize_between_ffmpeg_peers(serve: list[str], record: list[str], src: tuple[str, int], dst: tuple[str, int],
                                 capsys, udp: bool = False) -> tuple[int, int]:
    """One ffmpeg serves 3 s of 25 fps 160x120 video + sine audio (``serve``: its output),
    another records (``record``: its input and file); stylize plays the first into the
    second, (URL, port) each. Returns the (styled, dropped) frames stylize reports."""
    quiet = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error"]
    source = subprocess.Popen([*quiet, *CLIP_3S, *serve], stderr=subprocess.PIPE)
    sink = subprocess.Popen([*quiet, *record], stderr=subprocess.PIPE)
    try:
        wait_listening(src[1], source, udp=udp)
        wait_listening(dst[1], sink, udp=udp)
        assert cli(["stylize", src[0], "--model", str(MODEL), "--timeout", "10", "--out", dst[0]]) == 0
        sink.wait(timeout=15)
    finally:
        for peer in (source, sink):
            peer.kill()
            peer.wait()
    report = re.search(r"\((\d+) frames(?:, (\d+) dropped)?, ([\d.]+) fps", capsys.readouterr().out)
    return int(report[1]), int(report[2] or 0)


@needs_ffmpeg
def test_rtmp_in_rtmp_out_with_ffmpeg_peers(tmp_path, capsys):
    """An ffmpeg publishes 3 s of 25 fps 160x120 video + sine audio as an RTMP server; stylize
    plays it, styles it (newest frame wins) and publishes to a second ffmpeg, which records."""
    src_port, dst_port = free_port(), free_port()
    src_url, dst_url = f"rtmp://127.0.0.1:{src_port}/live/in", f"rtmp://127.0.0.1:{dst_port}/live/out"
    recording = tmp_path / "recorded.flv"
    styled, dropped = stylize_between_ffmpeg_peers(["-f", "flv", "-listen", "1", src_url],
                                                   ["-listen", "1", "-i", dst_url, "-c", "copy", "-y", str(recording)],
                                                   (src_url, src_port), (dst_url, dst_port), capsys)
    assert 10 <= styled and styled + dropped <= 76
    got = probe(recording)
    assert got["codec"] == "h264" and got["pix_fmt"] == "yuv420p" and got["frames"][0].shape == (120, 160, 3)
    assert len(got["frames"]) == styled
    assert got["audio_codec"] == "aac" and sound_spans_picture(got)


@needs_ffmpeg
def test_srt_in_srt_out_through_the_ffmpeg_relay(tmp_path, capsys):
    """SRT, which PyAV's own FFmpeg lacks: stylize relays it through the ffmpeg command both
    ways (caller to an ffmpeg listener serving 3 s of video + sound, and to one recording)."""
    src_port, dst_port = free_port(), free_port()
    recording = tmp_path / "recorded.ts"
    styled, _ = stylize_between_ffmpeg_peers(["-f", "mpegts", f"srt://127.0.0.1:{src_port}?mode=listener"],
                                             ["-i", f"srt://127.0.0.1:{dst_port}?mode=listener", "-c", "copy", "-y", str(recording)],
                                             (f"srt://127.0.0.1:{src_port}", src_port), (f"srt://127.0.0.1:{dst_port}", dst_port),
                                             capsys, udp=True)
    assert styled >= 10
    got = probe(recording)
    assert got["codec"] == "h264" and got["frames"][0].shape == (120, 160, 3) and len(got["frames"]) == styled
    assert got["audio_codec"] == "aac" and sound_spans_picture(got)
