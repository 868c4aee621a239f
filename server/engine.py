"""(2) Worker threads that run the models; one ``Pipeline`` per peer.

A peer's style job and its saliency and lens jobs run in separate thread pools, so a
slow saliency method or lens never holds up styling: the newest saliency map (and lens
view) is drawn on every frame until the next one is ready. Each peer has at most one style
job, one saliency job and one lens job in flight (the track awaits its style job before
taking the next frame; newer frames replace older ones meanwhile), and the pools serve jobs first-come first-served, so peers take
turns fairly. The per-frame path writes into buffers allocated once per frame size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

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
    """Runs in each new saliency thread: raise this thread's niceness (Linux keeps it per
    thread; onnxruntime computes in the calling thread when a session has one thread)."""
    if nice and sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


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
                 saliency_fps: float, lens_fps: float = 60.0) -> None:
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
        self._saliency_input: np.ndarray | None = None
        self._saliency_map: np.ndarray | None = None  # newest map, float32 0..1 at the model's size
        self._saliency_method = "off"
        self._saliency_task: asyncio.Task | None = None
        self._next_saliency = 0.0
        self._lens_input: np.ndarray | None = None
        self._lens_view: LensView | None = None  # newest view, for the settings in _lens_key
        self._lens_key: tuple = ("off",)
        self._lens_task: asyncio.Task | None = None
        self._next_lens = 0.0
        self._lens_drawing = LensDrawing()
        self.lens_runs = 0  # lens views made, for the page's lens rate
        self._oversize_reported = False
        self._top5: list[dict] = []
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
        view = self._lens_view
        return PipelineStats(settings.style, settings.saliency, ms, list(self._top5) if settings.saliency != "off" else [],
                             settings.lens, view.info if view is not None else None)

    # -- event loop side ---------------------------------------------------------------
    async def process(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The styled frame for ``frame`` (the frame itself when there is nothing to do)."""
        settings = self._settings
        if settings.saliency != self._saliency_method:
            self._saliency_method, self._saliency_map, self._top5 = settings.saliency, None, []
        lens_key = _lens_key(settings)
        if lens_key != self._lens_key:
            self._lens_key, self._lens_view = lens_key, None
        idle = settings.style is None and settings.saliency == "off" and settings.lens == "off"
        if idle and frame.width * frame.height <= self.engine.max_frame_pixels:
            return frame
        now = time.monotonic()
        want_saliency = settings.saliency != "off" and self._saliency_task is None and now >= self._next_saliency
        want_lens = settings.lens != "off" and self._lens_task is None and now >= self._next_lens
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(self.engine.style_pool, self._style_job, frame, settings, want_saliency, want_lens)
        if want_saliency and not self.closed:
            self._next_saliency = now + self.engine.saliency_interval
            self._saliency_task = asyncio.create_task(self._saliency(settings.saliency))
        if want_lens and not self.closed:
            self._next_lens = now + self.engine.lens_interval
            self._lens_task = asyncio.create_task(self._lens(settings))
        return out

    async def _saliency(self, method: str) -> None:
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.engine.saliency_pool, self._saliency_job, method)
        finally:
            self._saliency_task = None

    async def _lens(self, settings: Settings) -> None:
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.engine.saliency_pool, self._lens_job, settings)
        finally:
            self._lens_task = None

    def close(self) -> None:
        self.closed = True
        for task in (self._saliency_task, self._lens_task):
            if task is not None:
                task.cancel()

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

    def _style_job(self, frame: av.VideoFrame, settings: Settings, want_saliency: bool, want_lens: bool = False) -> av.VideoFrame:
        t = time.perf_counter()
        b = self._decode(frame)
        if want_saliency:
            self._saliency_input = _copy_into(self._saliency_input, b.small)
        if want_lens:
            self._lens_input = _copy_into(self._lens_input, b.small)
        t = self._time("decode", t)
        image = b.rgb
        view = self._lens_view if settings.lens != "off" else None
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
        saliency = self._saliency_map
        if saliency is not None and settings.saliency != "off":
            image = b.drawable(image)
            self._overlay.apply(image, saliency, settings.opacity)
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

    def _saliency_job(self, method: str) -> None:
        name = self.engine.registry.saliency_for(method)
        runner = self._runner(name) if name else None
        if name is None or runner is None or self._saliency_input is None:
            return
        t = time.perf_counter()
        try:
            result = runner(self._saliency_input)  # target -1: explain the top class
        except Exception as e:
            self._failed(name, f"saliency model {name!r} failed ({str(e).splitlines()[0]}); saliency is off")
            return
        self._worked(name)
        if self._settings.saliency == method:  # the choice may have changed meanwhile
            self._saliency_map = result.map
            self._top5 = runner.top5(result.logits)
        self._time("saliency", t)

    def _lens_job(self, settings: Settings) -> None:
        name = self.engine.registry.lens_for(settings.lens)
        runner = self._runner(name) if name else None
        if name is None or runner is None or self._lens_input is None:
            return
        t = time.perf_counter()
        previous = self._lens_view.image if served_lens(settings.lens).feeds_back and self._lens_view is not None else None
        try:
            view = runner(fed_back(self._lens_input, previous), settings.layer, settings.channel, settings.target)
        except Exception as e:
            self._failed(name, f"lens {name!r} failed ({str(e).splitlines()[0]}); the lens is off")
            return
        self._worked(name)
        if _lens_key(self._settings) == _lens_key(settings):  # the choice may have changed meanwhile
            self._lens_view = view
            self.lens_runs += 1
            if self._on_lens is not None:
                self._on_lens({"lens": settings.lens, **view.info})
        self._time("lens", t)


def _lens_key(settings: Settings) -> tuple:
    """The settings a lens view depends on: a view made for others is not shown."""
    return (settings.lens, settings.layer, settings.channel, settings.target) if settings.lens != "off" else ("off",)


def _copy_into(buffer: np.ndarray | None, image: np.ndarray) -> np.ndarray:
    """``image`` copied into ``buffer``, which is (re)allocated only when its shape differs."""
    if buffer is None or buffer.shape != image.shape:
        buffer = np.empty_like(image)
    np.copyto(buffer, image)
    return buffer
