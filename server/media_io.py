"""Video sources and sinks through PyAV (FFmpeg): files, cameras, network URLs and pipes.

A source yields decoded video frames and the audio packets around them, in stream order.
A live source (a camera, a URL, a pipe) is read
by ``LiveReader`` in a thread that keeps only the newest frame, so a model slower than
the source drops frames instead of falling ever further behind. A sink encodes the styled
frames and copies the audio packets untouched, keeping their timestamps, so sound and
picture stay in sync even when frames are dropped. A file sink writes to a staging name
and renames the file only once it is complete.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, cast

import av
import numpy as np

from stylecam.server.images import staging_path

STDIO = "-"
SINK_FORMATS = {"rtmp": "flv", "rtmps": "flv", "srt": "mpegts", "udp": "mpegts", "tcp": "mpegts", "rtsp": "rtsp"}
FILE_CODECS = {".webm": "libvpx-vp9"}
DEFAULT_CODEC = "libx264"
NO_PROTOCOL_HINT = (" in PyAV's FFmpeg (its wheels have no SRT), and no ffmpeg command on PATH to relay it "
                    "(apt-get install ffmpeg)")
RELAY = ("-nostdin", "-hide_banner", "-loglevel", "error")
# a live pipe must not wait for FFmpeg's default 5 s of probing before its first frame
LIVE_PROBE = {"probesize": "500000", "analyzeduration": "500000"}
FALLBACK_RATE = Fraction(30)
AUDIO_LEAD = 0.1  # seconds of sound kept from before the first styled frame

Item = av.VideoFrame | av.Packet


class MediaError(ValueError):
    """A source or sink FFmpeg cannot open, read or write; the message names it."""


@contextlib.contextmanager
def named(what: str) -> Iterator[None]:
    """FFmpeg's errors, and PyAV's codec/format mismatches, as one line that names ``what``."""
    try:
        yield
    except (av.FFmpegError, ValueError) as e:
        hint = NO_PROTOCOL_HINT if isinstance(e, av.error.ProtocolNotFoundError) else ""
        raise MediaError(f"{what}: {getattr(e, 'strerror', None) or e}{hint}") from None


def is_url(spec: str) -> bool:
    return "://" in spec


def camera_device(spec: str) -> str | None:
    """``0`` or ``/dev/video0`` -> the V4L2 device path; anything else -> None."""
    if spec.isdigit():
        return f"/dev/video{spec}"
    return spec if spec.startswith("/dev/video") else None


def is_stream(spec: str) -> bool:
    """A camera, URL or pipe rather than a file on disk."""
    return spec == STDIO or is_url(spec) or camera_device(spec) is not None


def stream_name(spec: str) -> str:
    """A file stem for outputs made from a non-file source: ``stdin``, ``video0``, ``in``."""
    if spec == STDIO:
        return "stdin"
    tail = spec.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return tail.split(":")[0] or "stream"


def check_encoder(name: str) -> None:
    """An unknown ``--codec`` is found before any source is opened or any file written."""
    try:
        codec = av.Codec(name, "w")
    except (av.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
        raise MediaError(f"--codec {name}: no such encoder in this FFmpeg; try libx264, libx265, libvpx-vp9, mpeg4") from None
    if codec.type != "video":
        raise MediaError(f"--codec {name}: a {codec.type} encoder, not a video one")


class Relay:
    """The ffmpeg command between a URL whose protocol PyAV's own FFmpeg lacks (SRT: its
    wheels are built without libsrt) and a pipe that PyAV reads or writes: packets are
    copied, never re-encoded, as MPEG-TS on the pipe."""

    def __init__(self, url: str, send: bool) -> None:
        ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
        probe = [item for key, value in LIVE_PROBE.items() for item in (f"-{key}", value)]
        if send and url.startswith("srt://") and "linger=" not in url:  # send the tail before closing (live mode's default: drop it)
            url += ("&" if "?" in url else "?") + "linger=2"
        pipe = ([*probe, "-f", "mpegts", "-i", "pipe:0", "-map", "0", "-c", "copy", "-f", "mpegts", url] if send
                else [*probe, "-i", url, "-map", "0", "-c", "copy", "-flush_packets", "1", "-f", "mpegts", "pipe:1"])
        self.process = subprocess.Popen([ffmpeg, *RELAY, *pipe], stdin=subprocess.PIPE if send else subprocess.DEVNULL,
                                        stdout=None if send else subprocess.PIPE, stderr=subprocess.PIPE)
        self.pipe = cast(IO[bytes], self.process.stdin if send else self.process.stdout)  # both asked for above
        # FFmpeg's own pipe protocol on the descriptor (it leaves it open): a Python file
        # object would be read in whole buffers, holding a live stream back for seconds
        self.url = f"pipe:{self.pipe.fileno()}"

    def problem(self) -> str:
        """What the ffmpeg command said before it ended, if it did."""
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        lines = self.process.stderr.read().decode(errors="replace").strip().splitlines()
        return f" (ffmpeg relay: {lines[-1]})" if lines else ""

    def close(self, timeout: float) -> None:
        """Let ffmpeg finish what it was given, then make sure it is gone."""
        with contextlib.suppress(OSError):
            self.pipe.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@functools.cache
def has_protocol(scheme: str) -> bool:
    """Whether PyAV's FFmpeg speaks ``scheme``: an output URL is only opened at its first
    packet, too late to relay it, so a sink asks first (a read that cannot connect to the
    discard port, 127.0.0.1:9, fails at once for any protocol FFmpeg has)."""
    try:
        av.open(f"{scheme}://127.0.0.1:9", timeout=(0.2, 0.2)).close()
    except av.error.ProtocolNotFoundError:
        return False
    except (av.FFmpegError, OSError, ValueError):
        pass
    return True


def open_container(url: str, what: str, relayable: bool, **options: object) -> tuple[av.container.Container, Relay | None]:
    """``av.open(url, **options)``, or through a ``Relay`` when PyAV's FFmpeg lacks the
    URL's protocol and the ffmpeg command is here; errors as one line naming ``what``."""
    send = options.get("mode") == "w"
    relay_it = relayable and shutil.which("ffmpeg") is not None
    if not (send and relay_it and not has_protocol(url.split("://", 1)[0].lower())):
        with named(what):
            try:
                return av.open(url, **options), None  # type: ignore[call-overload]
            except av.error.ProtocolNotFoundError:
                if not relay_it:
                    raise
    relay = Relay(url, send)
    try:
        with named(what):
            if send:
                return av.open(relay.url, mode="w", format=str(options.get("format") or "mpegts")), relay
            return av.open(relay.url, format="mpegts", options=LIVE_PROBE), relay
    except MediaError as e:
        relay.close(timeout=2)
        raise MediaError(f"{e}{relay.problem()}") from None


@dataclass
class Source:
    """An opened input: its first video stream and every audio stream."""

    spec: str
    container: av.container.InputContainer
    video: av.VideoStream
    audio: list[av.AudioStream]
    relay: Relay | None = None

    @property
    def live(self) -> bool:
        """A camera, stream or pipe: frames come at their own pace, not the model's."""
        return is_stream(self.spec)

    @property
    def rate(self) -> Fraction:
        return self.video.average_rate or self.video.guessed_rate or FALLBACK_RATE

    @property
    def frames(self) -> int | None:
        return self.video.frames or None

    def items(self) -> Iterator[Item]:
        """Decoded video frames and undecoded audio packets, in the order they arrive."""
        with named(self.spec):
            for packet in self.container.demux(self.video, *self.audio):
                if packet.stream.type == "video":
                    yield from cast(list[av.VideoFrame], packet.decode())
                elif packet.dts is not None:  # not the demuxer's empty end-of-stream packet
                    yield packet

    def close(self) -> None:
        self.container.close()
        if self.relay is not None:
            self.relay.close(timeout=2)


def open_source(spec: str, timeout: float) -> Source:
    """A file, camera (``0``, ``/dev/video0``), URL (rtsp/rtmp/srt/http...) or ``-`` (stdin)."""
    device = camera_device(spec)
    url = "pipe:0" if spec == STDIO else device or spec
    opened, relay = open_container(url, f"{spec}: no camera {device}" if device and device != spec else spec, is_url(spec),
                                   format="v4l2" if device else None, timeout=(timeout, timeout) if is_stream(spec) else None)
    container = cast(av.container.InputContainer, opened)
    if not container.streams.video:
        container.close()
        raise MediaError(f"{spec}: has no video stream")
    return Source(spec, container, container.streams.video[0], list(container.streams.audio), relay)


class LiveReader:
    """Reads a live source in a thread and keeps only its newest frame (audio packets all
    queue: they are small and must not be lost); ``dropped`` counts the frames overwritten
    before the styling loop took them."""

    def __init__(self, items: Iterator[Item]) -> None:
        self._items = items
        self._cond = threading.Condition()
        self._frame: av.VideoFrame | None = None
        self._audio: list[av.Packet] = []
        self._ended = self._stop = False
        self.dropped = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._read, name="stylize-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for item in self._items:
                with self._cond:
                    if self._stop:
                        return
                    if isinstance(item, av.VideoFrame):
                        self.dropped += self._frame is not None
                        self._frame = item
                    else:
                        self._audio.append(item)
                    self._cond.notify()
        except MediaError as e:
            self.error = str(e)
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify()

    def __iter__(self) -> Iterator[Item]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._frame is not None or self._audio or self._ended, timeout=0.5)
                audio, self._audio = self._audio, []
                frame, self._frame = self._frame, None
                ended = self._ended
            yield from audio
            if frame is not None:
                yield frame
            elif ended and not audio:
                return

    def stop(self, timeout: float) -> bool:
        """Ask the reader to stop; True once it has (a stalled source holds it until its read timeout)."""
        with self._cond:
            self._stop = True
        self._thread.join(timeout)
        return not self._thread.is_alive()


def sink_format(target: str) -> str | None:
    """The container for a target: FLV for RTMP, MPEG-TS for SRT and stdout, MP4 for a
    file without a suffix; None lets FFmpeg choose from the file's suffix."""
    if target == STDIO:
        return "mpegts"
    if is_url(target):
        scheme = target.split("://", 1)[0].lower()
        if scheme not in SINK_FORMATS:
            raise MediaError(f"--out {target}: cannot send to {scheme}://; use rtmp://, srt://, a file or - (stdout)")
        return SINK_FORMATS[scheme]
    return None if Path(target).suffix else "mp4"


class Sink:
    """Encodes styled RGB frames (``codec``, yuv420p) and copies ``source``'s audio packets
    into a file, URL or stdout."""

    def __init__(self, target: str, source: Source, codec: str | None, fmt: str | None, timeout: float) -> None:
        self.target = target
        self.stream = is_stream(target)
        self._path = None if self.stream else Path(target)
        self._staged = None if self._path is None else staging_path(self._path)
        fmt = fmt or sink_format(target)
        url = "pipe:1" if target == STDIO else target if self.stream else str(self._staged)
        opened, self._relay = open_container(url, target, is_url(target), mode="w", format=fmt, timeout=timeout if self.stream else None)
        self._out = cast(av.container.OutputContainer, opened)
        try:
            with named(target):
                name = codec or FILE_CODECS.get(Path(target).suffix.lower(), DEFAULT_CODEC)
                self._video = cast(av.VideoStream, self._out.add_stream(name, rate=source.rate, options=self._options(name, source.rate)))
                self._audio = {s.index: self._out.add_stream_from_template(s) for s in source.audio}
        except BaseException:
            self.abort()
            raise
        time_base = self._video.codec_context.time_base = source.video.time_base or 1 / source.rate
        self._tick = max(1, round(1 / (source.rate * time_base)))  # one frame, for frames without a time
        self._pixel_format = yuv420p_or_native(self._video)
        self._video.pix_fmt = self._pixel_format
        self._pending: list[av.Packet] | None = []  # audio held until the video size is known
        self._last_pts: int | None = None

    def _options(self, codec: str, rate: Fraction) -> dict[str, str]:
        """A live sink must not wait on x264's lookahead: fast preset, no B-frames, 2 s GOP.
        x265 would print its settings over the progress bar."""
        if codec == "libx264" and self.stream:
            return {"preset": "veryfast", "tune": "zerolatency", "g": str(round(2 * rate))}
        return {"x265-params": "log-level=error"} if codec == "libx265" else {}

    def copy(self, packet: av.Packet) -> None:
        """An audio packet, as it came, in its own stream's time."""
        if self._pending is not None:
            self._pending.append(packet)
            return
        packet.stream = self._audio[packet.stream.index]
        with named(self.target):
            self._out.mux(packet)

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        """One styled frame at ``pts`` in the source's video time base (increasing; None: next)."""
        if self._pixel_format == "yuv420p":  # 4:2:0 needs even sides
            rgb = rgb[: rgb.shape[0] & ~1, : rgb.shape[1] & ~1]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if self._last_pts is None:
            self._video.width, self._video.height = frame.width, frame.height
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            pts = 0 if self._last_pts is None else self._last_pts + (self._tick if pts is None else 1)
        frame.pts, frame.time_base, self._last_pts = pts, self._video.codec_context.time_base, pts
        with named(self.target):
            self._out.mux(self._video.encode(frame))
        if self._pending is not None:  # the sound from where the picture starts (a live source's first frames may have been dropped)
            pending, self._pending = self._pending, None
            start = float(pts * frame.time_base) - AUDIO_LEAD
            for packet in pending:
                if packet.pts is None or packet.time_base is None or float(packet.pts * packet.time_base) >= start:
                    self.copy(packet)

    def close(self) -> None:
        """Flush the encoder, finish the container and, for a file, move it into place; a
        sink given no frame leaves nothing and says so (there is no video to finish)."""
        if self._last_pts is None:
            self.abort()
            raise MediaError(f"{self.target}: no frames to write (the source gave none); nothing written")
        try:
            with named(self.target):
                self._out.mux(self._video.encode(None))
                self._out.close()
        except BaseException:
            self.abort()
            raise
        if self._relay is not None:
            self._relay.close(timeout=10)
        if self._staged is not None and self._path is not None:
            os.replace(self._staged, self._path)

    def abort(self) -> None:
        """Close without finishing; a file's partial output is deleted."""
        with contextlib.suppress(av.FFmpegError, ValueError):
            self._out.close()
        if self._relay is not None:
            self._relay.close(timeout=0)
        if self._staged is not None:
            self._staged.unlink(missing_ok=True)


def yuv420p_or_native(stream: av.VideoStream) -> str:
    """yuv420p, what every player decodes, unless the encoder cannot take it."""
    formats = [f.name for f in stream.codec_context.codec.video_formats or ()]
    return "yuv420p" if not formats or "yuv420p" in formats else formats[0]

