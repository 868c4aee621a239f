"""(2) Worker threads that run the models; one ``Pipeline`` per peer.

A peer's style job runs in the style pool; its saliency and lens jobs (``SideJob``, one type
for both) run in a second, niced pool, so a slow saliency method or lens never holds up
styling: the newest saliency map (and lens view) is drawn on every frame until the next one
is ready. Each peer has at most one style job, one saliency job and one lens job in flight
(the track awaits its style job before taking the next frame; newer frames replace older
ones meanwhile), and the pools serve jobs first-come first-served, so peers take turns
fairly. The per-frame path writes into buffers allocated once per frame size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import av
import cv2
import numpy as np

from stylecam.server.compose import LensDrawing, LensView, Overlay, mix_strength
from stylecam.server.control import Settings
from stylecam.server.lenses import served_lens
from stylecam.server.ort_model import Binding
from stylecam.server.registry import Registry
from stylecam.server.runner import fed_back

log = logging.getLogger(__name__)


SALIENCY_NICE = 10  # CFS weight 110 against styling's 1024: a tenth of a contended core, all of an idle one
RETRY_FIRST_S = 1.0  # a model that failed is tried again after 1 s, then 2, 4, ... up to RETRY_MAX_S
RETRY_MAX_S = 60.0


def _renice(nice: int) -> None:
    """Runs in each new saliency thread: raise this thread's niceness by ``nice`` above the
    process's (Linux keeps it per thread; onnxruntime computes in the calling thread when a
    session has one thread), so styling keeps its lead in a server started under ``nice``."""
    if nice and sys.platform == "linux":
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


@dataclass(frozen=True)
class ThreadPlan:
    """How many jobs run at once and how many threads each onnxruntime session uses."""

    style_workers: int
    style_threads: int
    saliency_workers: int
    saliency_threads: int
    saliency_nice: int = 0  # niceness of the saliency threads (Linux): styling comes first

    @classmethod
    def for_device(cls, device: str, max_peers: int, threads: int = 0) -> ThreadPlan:
        """CPU: as many concurrent style jobs as cores (never more than peers), each
        session's intra-op pool sized to the cores (concurrent runs share it), saliency
        on half the cores at a lower priority, so that it runs on what styling leaves idle
        instead of taking turns with it. CUDA: the GPU does the work; host threads only feed it."""
        cores = threads or len(os.sched_getaffinity(0))
        if device == "cuda":
            return cls(style_workers=max(1, min(max_peers, 4)), style_threads=1, saliency_workers=1, saliency_threads=1)
        return cls(
            style_workers=max(1, min(max_peers, cores)),
            style_threads=cores,
            saliency_workers=1,
            saliency_threads=max(1, cores // 2),
            saliency_nice=SALIENCY_NICE,
        )


def fit_within(width: int, height: int, box: tuple[int, int] | None) -> tuple[int, int]:
    """The size to process a width x height frame at: scaled down (aspect kept, even
    sides) to fit ``box`` = (max width, max height); None keeps the frame's size."""
    if box is None or (width <= box[0] and height <= box[1]):
        return width, height
    scale = min(box[0] / width, box[1] / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class Engine:
    """App-scoped: the registry, the thread pools, and the per-peer pipelines they serve."""

    def __init__(self, registry: Registry, plan: ThreadPlan, process_size: tuple[int, int] | None, max_frame_pixels: int,
                 saliency_fps: float, lens_fps: float) -> None:
        self.registry = registry
        self.plan = plan
        self.process_size = process_size
        self.max_frame_pixels = max_frame_pixels
        self.saliency_interval = 1.0 / saliency_fps if saliency_fps > 0 else 0.0
        self.lens_interval = 1.0 / lens_fps if lens_fps > 0 else 0.0
        self.style_pool = ThreadPoolExecutor(plan.style_workers, thread_name_prefix="style")
        self.saliency_pool = ThreadPoolExecutor(plan.saliency_workers, thread_name_prefix="saliency",
                                                initializer=_renice, initargs=(plan.saliency_nice,))

    def pipeline(self, settings: Settings, on_error: Callable[[str], None], on_lens: Callable[[dict], None] | None = None) -> Pipeline:
        return Pipeline(self, settings, on_error, on_lens)

    def close(self) -> None:
        self.style_pool.shutdown(wait=False, cancel_futures=True)
        self.saliency_pool.shutdown(wait=False, cancel_futures=True)


class _Buffers:
    """Everything one frame size needs, allocated once."""

    def __init__(self, width: int, height: int, small: tuple[int, int]) -> None:
        self.size = (width, height)
        self.small_size = small
        self.rgb = np.empty((height, width, 3), np.uint8)
        self.resized = small != (width, height)
        self.small = np.empty((small[1], small[0], 3), np.uint8) if self.resized else self.rgb
        self.stylized_small = np.empty_like(self.small)
        self.stylized = np.empty_like(self.rgb) if self.resized else self.stylized_small
        self.mixed = np.empty_like(self.rgb)
        self.yuv = np.empty((height * 3 // 2, width), np.uint8)
        self.even = width % 2 == 0 and height % 2 == 0

    def drawable(self, image: np.ndarray) -> np.ndarray:
        """``image``, or a copy in ``mixed`` when it is the decoded frame: never draw on that in place."""
        if image is not self.rgb:
            return image
        np.copyto(self.mixed, self.rgb)
        return self.mixed


@dataclass(frozen=True)
class PipelineStats:
    """What the peer reports each second: the choices in force, stage times, top-5."""

    style: str | None
    saliency: str
    ms: dict[str, float]
    top5: list[dict]
    lens: str = "off"
    lens_info: dict | None = None  # the newest lens run's, for the page


class Backoff:
    """When each failed model may be tried again: each failure doubles its wait, a success
    forgets it. A passing fault (a GPU out of memory, a file being replaced) heals by itself;
    a lasting one costs one try a minute."""

    def __init__(self) -> None:
        self._wait: dict[str, float] = {}
        self._until: dict[str, float] = {}

    def resting(self, name: str) -> bool:
        return time.monotonic() < self._until.get(name, 0.0)

    def failed(self, name: str) -> float:
        """Seconds until ``name`` is tried again."""
        wait = min(RETRY_MAX_S, 2 * self._wait[name]) if name in self._wait else RETRY_FIRST_S
        self._wait[name], self._until[name] = wait, time.monotonic() + wait
        return wait

    def worked(self, name: str) -> bool:
        """Forget ``name``'s failures; True when it had any (the page hears it is back)."""
        self._until.pop(name, None)
        return self._wait.pop(name, None) is not None


class SaliencyView(NamedTuple):
    """The newest saliency run: its map (float32 0..1 at the model's size) and the top-5 it explains."""

    map: np.ndarray
    top5: list[dict]


class SideJob:
    """A model run beside styling, on the engine's niced pool (saliency, a lens): at most one
    in flight, at most one start per ``interval``, fed a copy of the newest frame as it
    starts, and keeping its newest result for the settings it was made for. ``key`` reads
    those settings (None: the job is off); a result is kept only when the pipeline's
    settings (``current``) still have its key when it ends, and dropped when they change,
    so a changed choice never shows a result made for the previous one. ``work`` runs in
    the pool's thread and returns the result, or None for none."""

    def __init__(self, pool: ThreadPoolExecutor, interval: float, key: Callable[[Settings], Hashable | None],
                 work: Callable[[np.ndarray, Settings], Any], current: Callable[[], Settings],
                 on_result: Callable[[Settings, Any], None] | None = None) -> None:
        self._pool, self._interval, self._key, self._work = pool, interval, key, work
        self._current, self._on_result = current, on_result
        self.shown_key: Hashable | None = None  # the settings ``result`` was made for
        self.result: Any = None
        self.input: np.ndarray | None = None
        self.task: asyncio.Task | None = None
        self.runs = 0  # results kept, for the page's rates
        self._next = 0.0

    def follow(self, settings: Settings) -> None:
        """Event loop, each frame: drop a result made for other settings."""
        key = self._key(settings)
        if key != self.shown_key:
            self.shown_key, self.result = key, None

    def result_for(self, settings: Settings) -> Any:
        """The result if it was made for ``settings`` (None when the job is off for them):
        between a change and the next frame, ``result`` still holds the previous choice's,
        which neither a frame nor the stats may show."""
        return self.result if self.shown_key == self._key(settings) else None

    def due(self, settings: Settings, now: float) -> bool:
        return self._key(settings) is not None and self.task is None and now >= self._next

    def feed(self, image: np.ndarray) -> None:
        """Style thread: the frame the job about to start runs on, copied into its own buffer."""
        self.input = _copy_into(self.input, image)

    def start(self, settings: Settings, now: float) -> None:
        self._next = now + self._interval
        self.task = asyncio.create_task(self._run(settings))

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self, settings: Settings) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._job, settings)
        finally:
            self.task = None

    def _job(self, settings: Settings) -> None:
        if self.input is None:
            return
        result = self._work(self.input, settings)
        if result is not None and self._key(self._current()) == self._key(settings):  # the choice may have changed meanwhile
            self.result = result
            self.runs += 1
            if self._on_result is not None:
                self._on_result(settings, result)


class Pipeline:
    """One peer's models, buffers, settings and timings. ``process`` is called by one
    track at a time; worker threads only read ``settings`` (replaced whole by ``update``)."""

    def __init__(self, engine: Engine, settings: Settings, on_error: Callable[[str], None],
                 on_lens: Callable[[dict], None] | None = None) -> None:
        self.engine = engine
        self._settings = settings
        self._on_error = on_error
        self._on_lens = on_lens  # called from a worker thread with each new lens view's info
        self._buffers: _Buffers | None = None
        self._bindings: dict[str, Binding] = {}
        self._backoff = Backoff()
        self._overlay = Overlay()
        current = lambda: self._settings  # noqa: E731 (the side jobs read the settings in force when they end)
        self.saliency = SideJob(engine.saliency_pool, engine.saliency_interval, _saliency_key, self._saliency_job, current)
        self.lens = SideJob(engine.saliency_pool, engine.lens_interval, _lens_key, self._lens_job, current, self._lens_made)
        self._lens_drawing = LensDrawing()
        self._oversize_reported = False
        self._ms: dict[str, float] = {}  # written by both thread pools
        self._ms_lock = threading.Lock()
        self.closed = False

    @property
    def settings(self) -> Settings:
        return self._settings

    def update(self, settings: Settings) -> None:
        """New settings, replaced whole, so a worker reads either the old or the new."""
        self._settings = settings

    def snapshot(self) -> PipelineStats:
        settings = self._settings
        with self._ms_lock:
            ms = {stage: round(value, 1) for stage, value in self._ms.items()}
        saliency, view = self.saliency.result_for(settings), self.lens.result_for(settings)
        return PipelineStats(settings.style, settings.saliency, ms, list(saliency.top5) if saliency is not None else [],
                             settings.lens, view.info if view is not None else None)

    @property
    def lens_runs(self) -> int:
        """Lens views made, for the page's lens rate."""
        return self.lens.runs

    # -- event loop side ---------------------------------------------------------------
    async def process(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The styled frame for ``frame`` (the frame itself when there is nothing to do)."""
        settings = self._settings
        jobs = (self.saliency, self.lens)
        for job in jobs:
            job.follow(settings)
        idle = settings.style is None and settings.saliency == "off" and settings.lens == "off"
        if idle and frame.width * frame.height <= self.engine.max_frame_pixels:
            return frame
        now = time.monotonic()
        due = [job for job in jobs if job.due(settings, now)]
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(self.engine.style_pool, self._style_job, frame, settings, due)
        if not self.closed:
            for job in due:
                job.start(settings, now)
        return out

    def close(self) -> None:
        self.closed = True
        self.saliency.cancel()
        self.lens.cancel()

    def report(self, message: str) -> None:
        """Tell the peer (thread-safe: the callback hops onto the event loop)."""
        log.warning(message)
        self._on_error(message)

    def _failed(self, name: str, message: str) -> None:
        self.report(f"{message} (trying it again in {self._backoff.failed(name):g} s)")

    def _worked(self, name: str) -> None:
        if self._backoff.worked(name):
            self.report(f"model {name!r} works again")

    def _time(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        ms = (now - start) * 1000.0
        with self._ms_lock:
            self._ms[stage] = ms if stage not in self._ms else 0.8 * self._ms[stage] + 0.2 * ms
        return now

    # -- worker thread side --------------------------------------------------------------
    def _runner(self, name: str) -> Any:  # StyleRunner or SaliencyRunner, as the name's card says
        if self._backoff.resting(name):
            return None
        try:
            return self.engine.registry.runner(name)
        except Exception as e:  # CardError, onnxruntime errors: degrade to pass-through
            self._failed(name, f"model {name!r} cannot be used ({e}); frames pass through unstyled")
            return None

    def _buffers_for(self, width: int, height: int) -> _Buffers:
        b = self._buffers
        if b is None or b.size != (width, height):
            b = self._buffers = _Buffers(width, height, fit_within(width, height, self.engine.process_size))
            self._overlay = Overlay()
        return b

    def _decode(self, frame: av.VideoFrame) -> _Buffers:
        limit = self.engine.max_frame_pixels
        if frame.width * frame.height > limit:
            scale = (limit / (frame.width * frame.height)) ** 0.5
            w, h = max(2, int(frame.width * scale) // 2 * 2), max(2, int(frame.height * scale) // 2 * 2)
            if not self._oversize_reported:
                self._oversize_reported = True
                self.report(f"incoming frames of {frame.width}x{frame.height} exceed the {limit}-pixel cap (--max-frame-pixels); scaled to {w}x{h}")
            frame = frame.reformat(width=w, height=h)
        b = self._buffers_for(frame.width, frame.height)
        if frame.format.name == "yuv420p" and b.even:
            cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420, dst=b.rgb)
        else:
            np.copyto(b.rgb, frame.to_ndarray(format="rgb24"))
        if b.resized:
            cv2.resize(b.rgb, b.small_size, dst=b.small, interpolation=cv2.INTER_AREA)
        return b

    def _stylize(self, b: _Buffers, settings: Settings) -> bool:
        name = settings.style
        runner = self._runner(name) if name else None
        if name is None or runner is None:
            return False
        binding = self._bindings.get(name)
        if binding is None:
            binding = self._bindings[name] = runner.model.binding()
        try:
            runner.run_into(binding, b.stylized_small, b.small, runner.style(settings.weight_vector))
        except Exception as e:
            self._failed(name, f"model {name!r} failed on a {b.small_size[0]}x{b.small_size[1]} frame ({str(e).splitlines()[0]}); frames pass through unstyled")
            return False
        self._worked(name)
        return True

    def _style_job(self, frame: av.VideoFrame, settings: Settings, due: Sequence[SideJob] = ()) -> av.VideoFrame:
        t = time.perf_counter()
        b = self._decode(frame)
        for job in due:
            job.feed(b.small)
        t = self._time("decode", t)
        image = b.rgb
        view = self.lens.result_for(settings)
        if view is not None and view.image is not None:  # the lens's picture replaces the frame: nothing to style
            image = self._lens_drawing.apply(b.mixed, view, settings.opacity)
            view = None
            t = self._time("lens-draw", t)
        elif self._stylize(b, settings):
            t = self._time("style", t)
            if b.resized:
                cv2.resize(b.stylized_small, b.size, dst=b.stylized, interpolation=cv2.INTER_LINEAR)
            image = b.stylized
            if settings.strength < 1.0:
                mix_strength(b.stylized, b.rgb, settings.strength, b.mixed)
                image = b.mixed
            t = self._time("upscale+mix", t)
        saliency = self.saliency.result_for(settings)
        if saliency is not None:
            image = b.drawable(image)
            self._overlay.apply(image, saliency.map, settings.opacity)
            t = self._time("overlay", t)
        if view is not None:
            image = b.drawable(image)
            self._lens_drawing.apply(image, view, settings.opacity)
            t = self._time("lens-draw", t)
        if b.even:
            cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420, dst=b.yuv)
            out = av.VideoFrame.from_ndarray(b.yuv, format="yuv420p")
        else:
            out = av.VideoFrame.from_ndarray(image, format="rgb24")
        self._time("encode-prep", t)
        return out

    def _side_run(self, name: str | None, stage: str, what: str, off: str, run: Callable[[Any], Any]) -> Any:
        """``run(runner)`` for the side model ``name``, timed as ``stage``; a failure is
        reported ("``what`` NAME failed (why); ``off``") and gives None."""
        runner = self._runner(name) if name else None
        if name is None or runner is None:
            return None
        t = time.perf_counter()
        try:
            result = run(runner)
        except Exception as e:
            self._failed(name, f"{what} {name!r} failed ({str(e).splitlines()[0]}); {off}")
            return None
        self._worked(name)
        self._time(stage, t)
        return result

    def _saliency_job(self, image: np.ndarray, settings: Settings) -> SaliencyView | None:
        def run(runner: Any) -> SaliencyView:
            result = runner(image)  # target -1: explain the top class
            return SaliencyView(result.map, runner.top5(result.logits))

        return self._side_run(self.engine.registry.saliency_for(settings.saliency), "saliency", "saliency model", "saliency is off", run)

    def _lens_job(self, image: np.ndarray, settings: Settings) -> LensView | None:
        last = self.lens.result
        previous = last.image if served_lens(settings.lens).feeds_back and last is not None else None
        return self._side_run(self.engine.registry.lens_for(settings.lens), "lens", "lens", "the lens is off",
                              lambda runner: runner(fed_back(image, previous), settings.layer, settings.channel, settings.target))

    def _lens_made(self, settings: Settings, view: LensView) -> None:
        if self._on_lens is not None:
            self._on_lens({"lens": settings.lens, **view.info})


def _saliency_key(settings: Settings) -> str | None:
    """The setting a saliency map depends on; None: off."""
    return settings.saliency if settings.saliency != "off" else None


def _lens_key(settings: Settings) -> tuple | None:
    """The settings a lens view depends on (a view made for others is not shown); None: off."""
    return (settings.lens, settings.layer, settings.channel, settings.target) if settings.lens != "off" else None


def _copy_into(buffer: np.ndarray | None, image: np.ndarray) -> np.ndarray:
    """``image`` copied into ``buffer``, which is (re)allocated only when its shape differs."""
    if buffer is None or buffer.shape != image.shape:
        buffer = np.empty_like(image)
    np.copyto(buffer, image)
    return buffer
