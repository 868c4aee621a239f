"""(1) The newest incoming frame -> the peer's pipeline -> the outgoing frame.

aiortc's remote track queues every decoded frame without bound, so a reader task drains
it as fast as frames arrive and keeps only the newest; frames replaced before they were
taken count as dropped. The outgoing track takes the newest frame each time the sender
asks for one, so one job at most is in flight and latency never builds up.
"""

from __future__ import annotations

import asyncio
import logging
import time

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from stylecam.server.engine import Pipeline

log = logging.getLogger(__name__)


class NewestFrame:
    """Reads a track continuously, holding only its newest frame."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self._track = track
        self._frame: av.VideoFrame | None = None
        self._ready = asyncio.Event()
        self.ended = False
        self.frames_in = 0
        self.dropped = 0
        self.last_frame_at: float | None = None  # time.monotonic() of the newest arrival
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                frame = await self._track.recv()
                if not isinstance(frame, av.VideoFrame):  # a video track gives video frames only
                    continue
                if self._frame is not None:
                    self.dropped += 1
                self._frame = frame
                self.frames_in += 1
                self.last_frame_at = time.monotonic()
                self._ready.set()
        except MediaStreamError:
            pass
        finally:
            self.ended = True
            self._ready.set()

    async def get(self) -> av.VideoFrame:
        """The newest frame not taken yet; waits for one. MediaStreamError once the
        track has ended."""
        while self._frame is None:
            if self.ended:
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame, self._frame = self._frame, None
        return frame

    def stop(self) -> None:
        self._task.cancel()
        self.ended = True
        self._ready.set()


class StyledTrack(MediaStreamTrack):
    """The video track sent back: each newest frame through the pipeline, with the
    incoming frame's pts and time_base."""

    kind = "video"

    def __init__(self, source: NewestFrame, pipeline: Pipeline) -> None:
        super().__init__()
        self._source = source
        self._pipeline = pipeline
        self.frames_out = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            frame = await self._source.get()
        except MediaStreamError:
            self.stop()
            raise
        try:
            out = await self._pipeline.process(frame)
        except Exception as e:  # a bug in one stage must not end the stream: pass the frame on
            log.exception("processing failed; frame passed through")
            self._pipeline.report(f"processing failed ({type(e).__name__}: {e}); frames pass through")
            out = frame
        if out is not frame:
            out.pts, out.time_base = frame.pts, frame.time_base
        self.frames_out += 1
        return out
