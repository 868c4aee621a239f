"""The engine on its own, fast, on the tiny zoo (answers known by hand): the thread plan,
what a frame becomes for each choice (nothing to do, a style at full or reduced size, a
strength, an odd size), stage timings, saliency and lens jobs beside styling (their rate,
their reset when the choice changes, their failures), and closing; test_server_track and
test_server_lens drive the shipped graphs through it."""

from __future__ import annotations

import asyncio
import functools
import time

import av
import numpy as np
import pytest
from conftest import run
from test_server_track import make_engine, make_frame
from tiny_models import slow_down

from stylecam.server.compose import LensView
from stylecam.server.control import Settings
from stylecam.server.engine import Engine, ThreadPlan

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("device, peers, cores, plan", [
    ("cpu", 2, 4, ThreadPlan(2, 4, 1, 2, 10)),
    ("cpu", 8, 4, ThreadPlan(4, 4, 1, 2, 10)),
    ("cpu", 0, 3, ThreadPlan(1, 3, 1, 1, 10)),
    ("cpu", 4, 1, ThreadPlan(1, 1, 1, 1, 10)),
    ("cpu", 2, 16, ThreadPlan(2, 16, 1, 8, 10)),
    ("cuda", 2, 16, ThreadPlan(2, 1, 1, 1, 0)),
    ("cuda", 9, 16, ThreadPlan(4, 1, 1, 1, 0)),
    ("cuda", 0, 16, ThreadPlan(1, 1, 1, 1, 0)),
])
def test_the_thread_plan_for_each_device(device, peers, cores, plan):
    assert ThreadPlan.for_device(device, peers, cores) == plan


def test_no_threads_given_plans_for_the_cores_this_process_may_use():
    import os

    assert ThreadPlan.for_device("cpu", 64).style_threads == len(os.sched_getaffinity(0))


# frames at their own size, a lens job as soon as the last one ended (100 a second)
engine_for = functools.partial(make_engine, process_size=None, lens_fps=100.0)


def test_rates_become_intervals_and_zero_means_every_frame(tiny_zoo):
    engine = engine_for(tiny_zoo, saliency_fps=4, lens_fps=0)
    assert (engine.saliency_interval, engine.lens_interval) == (0.25, 0.0)
    engine.close()
    engine = engine_for(tiny_zoo, saliency_fps=0, lens_fps=8)
    assert (engine.saliency_interval, engine.lens_interval) == (0.0, 0.125)
    engine.close()
    engine = engine_for(tiny_zoo, saliency_fps=0.5, lens_fps=0.5)  # under one a second
    assert (engine.saliency_interval, engine.lens_interval) == (2.0, 2.0)
    engine.close()


def rgb(frame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24").astype(int)


def test_nothing_to_do_returns_the_frame_itself(tiny_zoo):
    async def go():
        for cap in (64 * 48, 1920 * 1080):  # at the pixel cap, and well under it
            engine = engine_for(tiny_zoo, max_pixels=cap)
            frame = make_frame(90, 0)
            assert await engine.pipeline(Settings(), print).process(frame) is frame
            engine.close()
        engine = engine_for(tiny_zoo, max_pixels=64 * 48)
        pipeline = engine.pipeline(Settings(), print)
        frame = make_frame(90, 0)
        assert await pipeline.process(frame) is frame and pipeline._buffers is None
        parsed = Settings(saliency="".join(["of", "f"]), lens="".join(["of", "f"]))  # "off" as a control message gives it: equal, not the same object
        pipeline.update(parsed)
        assert await pipeline.process(frame) is frame and pipeline._buffers is None
        engine.close()

    run(go())


@pytest.mark.parametrize("size, process_size, fmt", [
    ((64, 48), None, "yuv420p"), ((64, 48), (32, 24), "yuv420p"), ((63, 47), None, "rgb24"), ((64, 47), None, "rgb24"),
    ((63, 48), None, "rgb24"), ((62, 46), None, "yuv420p"),
])
def test_a_style_at_full_or_reduced_size_and_odd_sizes(tiny_zoo, size, process_size, fmt):
    async def go():
        engine = engine_for(tiny_zoo, process_size=process_size)
        pipeline = engine.pipeline(Settings(style="invert"), print)
        image = np.zeros((size[1], size[0], 3), np.uint8)
        image[:, : size[0] // 2] = 200
        image[:, size[0] // 2:] = 40
        frame = make_frame(image, 0)
        sent = rgb(frame)
        out = await pipeline.process(frame)
        assert (out.width, out.height, out.format.name) == (*size, fmt)
        inner = (slice(4, -4), np.r_[4: size[0] // 2 - 4, size[0] // 2 + 4: size[0] - 4])  # away from the edge
        assert np.abs(rgb(out)[inner] - (255 - sent[inner])).max() <= (3 if fmt == "rgb24" else 6)
        assert set(pipeline.snapshot().ms) == {"decode", "style", "upscale+mix", "encode-prep"}
        assert pipeline._buffers.resized == (process_size is not None)
        assert (pipeline._buffers.small is pipeline._buffers.rgb) == (process_size is None)  # no copy at full size
        engine.close()

    run(go())


def test_strength_mixes_the_style_with_the_frame(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo)
        pipeline = engine.pipeline(Settings(style="invert", strength=0.25), print)
        out = rgb(await pipeline.process(make_frame(40, 0)))
        assert abs(out.mean() - (0.25 * 215 + 0.75 * 40)) < 3
        engine.close()

    run(go())


def test_stage_times_are_a_moving_average(tiny_zoo):
    engine = engine_for(tiny_zoo)
    pipeline = engine.pipeline(Settings(), print)
    pipeline._time("x", time.perf_counter() - 0.1)
    assert pipeline.snapshot().ms["x"] == pytest.approx(100, abs=5)
    pipeline._ms["y"] = 12.345
    assert pipeline.snapshot().ms["y"] == 12.3  # the page gets a tenth of a millisecond
    pipeline._time("x", time.perf_counter() - 0.2)
    assert pipeline.snapshot().ms["x"] == pytest.approx(0.8 * 100 + 0.2 * 200, abs=5)
    engine.close()


async def settle(pipeline) -> None:
    for _ in range(500):
        if pipeline.saliency.task is None and pipeline.lens.task is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a job never finished")


def test_saliency_is_drawn_once_ready_at_its_rate_and_reset_when_the_method_changes(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo, saliency_fps=2)
        counted = slow_down(engine.registry, "fake-vanilla", 0.0)
        pipeline = engine.pipeline(Settings(style="invert", saliency="vanilla", opacity=1.0), print)
        plain = rgb(await pipeline.process(make_frame(100, 0)))
        assert pipeline.snapshot().top5 == []  # no map yet: the frame is only styled
        await settle(pipeline)
        drawn = rgb(await pipeline.process(make_frame(100, 1)))
        assert np.abs(drawn[:, -4:] - plain[:, -4:]).mean() > 40  # the ramp's hot right side
        assert [c["label"] for c in pipeline.snapshot().top5][:2] == ["c3", "c6"]
        pipeline.update(Settings(style="invert", saliency="".join(["of", "f"]), opacity=1.0))  # "off" from a message
        assert pipeline.snapshot().top5 == []  # at once, before the next frame
        pipeline.update(Settings(style="invert", saliency="vanilla", opacity=1.0))
        for i in range(5):
            await pipeline.process(make_frame(100, 2 + i))
        await settle(pipeline)
        assert counted.runs == 1  # 2 a second: no second job within half a second
        pipeline.update(Settings(style="invert", saliency="gradcam", opacity=1.0))
        again = rgb(await pipeline.process(make_frame(100, 9)))
        assert np.abs(again - plain).max() <= 2  # the old method's map is not drawn
        pipeline.update(Settings(style="invert"))
        assert pipeline.snapshot().top5 == []
        engine.close()

    run(go())


@pytest.mark.parametrize("first, then", [("vanilla", "gradcam"), ("gradcam", "vanilla")])
def test_a_map_made_for_a_method_no_longer_chosen_is_dropped(tiny_zoo, first, then):
    async def go():
        engine = engine_for(tiny_zoo)
        slow_down(engine.registry, f"fake-{first}", 0.2)
        pipeline = engine.pipeline(Settings(saliency=first), print)
        await pipeline.process(make_frame(100, 0))
        pipeline.update(Settings(saliency=then))
        await settle(pipeline)
        assert pipeline.saliency.result is None and pipeline.snapshot().top5 == []
        engine.close()

    run(go())


class Failing:
    def __init__(self, session) -> None:
        self._session = session

    def run(self, *args, **kwargs):
        raise RuntimeError("out of memory\nmore detail")

    def run_with_iobinding(self, io) -> None:
        raise RuntimeError("out of memory\nmore detail")

    def __getattr__(self, name: str):
        return getattr(self._session, name)


def test_a_failing_style_or_saliency_model_is_reported_once_and_left_off_for_a_while(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo, process_size=(32, 24))
        for name in ("invert", "fake-vanilla"):
            model = engine.registry.model(name)
            model.session = Failing(model.session)
        errors: list[str] = []
        pipeline = engine.pipeline(Settings(style="invert", saliency="vanilla"), errors.append)
        for i in range(3):
            out = rgb(await pipeline.process(make_frame(70, i)))
            assert np.abs(out - 70).max() <= 2  # passed through
            await settle(pipeline)
        assert errors == ["model 'invert' failed on a 32x24 frame (out of memory); frames pass through unstyled (trying it again in 1 s)",
                          "saliency model 'fake-vanilla' failed (out of memory); saliency is off (trying it again in 1 s)"]
        engine.close()

    run(go())


def test_a_failed_model_is_tried_again_after_a_doubling_wait_and_the_page_hears_it_is_back(tiny_zoo, monkeypatch):
    """A passing fault heals: styling comes back by itself, after 0.2 s, then 0.4 s, ... of
    pass-through (RETRY_FIRST_S shortened here), and the peer is told both ways."""
    from stylecam.server import engine as engine_module

    monkeypatch.setattr(engine_module, "RETRY_FIRST_S", 0.2)

    async def go():
        engine = engine_for(tiny_zoo, process_size=(32, 24))
        model = engine.registry.model("invert")
        working = model.session
        model.session = Failing(working)
        errors: list[str] = []
        pipeline = engine.pipeline(Settings(style="invert"), errors.append)
        start = time.monotonic()
        while len(errors) < 2:  # fails, rests 0.2 s, fails again, rests 0.4 s
            assert np.abs(rgb(await pipeline.process(make_frame(70, 0))) - 70).max() <= 2
            await asyncio.sleep(0.02)
        assert 0.2 <= time.monotonic() - start < 0.4
        assert [e.rsplit("(", 1)[1] for e in errors] == ["trying it again in 0.2 s)", "trying it again in 0.4 s)"]
        model.session = working
        assert np.abs(rgb(await pipeline.process(make_frame(70, 1))) - 70).max() <= 2  # still resting
        await asyncio.sleep(0.45)
        assert np.abs(rgb(await pipeline.process(make_frame(70, 2))) - 185).max() <= 3  # inverted again
        assert errors[2:] == ["model 'invert' works again"]
        engine.close()

    run(go())


class FakeLens:
    """A lens runner: a flat picture of ``value`` (or a heat map), counting runs and what it was fed."""

    def __init__(self, image: int | None = None, heat: bool = False, delay: float = 0.0, fail: bool = False) -> None:
        self.image, self.heat, self.delay, self.fail = image, heat, delay, fail
        self.fed: list[np.ndarray] = []

    def __call__(self, frame, layer, channel, target) -> LensView:
        time.sleep(self.delay)
        if self.fail:
            raise ValueError("bad layer\nmore")
        self.fed.append(frame.copy())
        image = np.full((20, 20, 3), self.image, np.uint8) if self.image is not None else None
        heat = np.tile(np.linspace(0, 1, 20, dtype=np.float32), (20, 1)) if self.heat else None
        return LensView("dream", heat=heat, image=image, info={"layer": layer, "channel": channel, "target": target})


def with_lens(engine: Engine, lens: FakeLens) -> None:
    engine.registry.lens_for = lambda method: "fake-lens"  # type: ignore[method-assign]
    engine.registry._runners["fake-lens"] = lens  # type: ignore[assignment]


def test_a_lens_picture_replaces_the_frame_and_its_view_reaches_the_peer(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo)
        lens = FakeLens(image=30)
        with_lens(engine, lens)
        views: list[dict] = []
        pipeline = engine.pipeline(Settings(style="invert", lens="fool", target=3), print, views.append)
        styled = rgb(await pipeline.process(make_frame(100, 0)))
        assert np.abs(styled - 155).max() <= 3  # no view yet: styled
        await settle(pipeline)
        assert views == [{"lens": "fool", "layer": None, "channel": -1, "target": 3}] and pipeline.lens_runs == 1
        replaced = rgb(await pipeline.process(make_frame(100, 1)))
        assert np.abs(replaced - 30).max() <= 3  # the lens's picture, not styled
        assert "lens-draw" in pipeline.snapshot().ms and pipeline.snapshot().lens_info["target"] == 3
        pipeline.update(Settings(style="invert", lens="fool", target=4))
        assert pipeline.snapshot().lens_info is None  # at once, before the next frame: the page would show target 3's
        changed = rgb(await pipeline.process(make_frame(100, 2)))
        assert np.abs(changed - 155).max() <= 3  # a view made for target 3 is not shown for 4
        await settle(pipeline)
        pipeline.update(Settings(style="invert"))
        assert np.abs(rgb(await pipeline.process(make_frame(100, 3))) - 155).max() <= 3
        assert pipeline.snapshot().lens == "off"
        engine.close()

    run(go())


def test_a_lens_heat_map_is_drawn_over_the_styled_frame(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo)
        with_lens(engine, FakeLens(heat=True))
        pipeline = engine.pipeline(Settings(style="invert", lens="activations", opacity=1.0), print)
        styled = rgb(await pipeline.process(make_frame(100, 0)))
        await settle(pipeline)
        drawn = rgb(await pipeline.process(make_frame(100, 1)))
        assert np.abs(drawn[:, :4] - styled[:, :4]).mean() < 25 < np.abs(drawn[:, -4:] - styled[:, -4:]).mean()
        engine.close()

    run(go())


def test_a_dream_is_fed_its_previous_picture_and_other_lenses_are_not(tiny_zoo):
    async def go():
        for method, fed_back in (("dream", True), ("activations", False)):
            engine = engine_for(tiny_zoo)
            lens = FakeLens(image=250)
            with_lens(engine, lens)
            pipeline = engine.pipeline(Settings(lens=method), print)
            for i in range(2):
                await pipeline.process(make_frame(0, i))
                await settle(pipeline)
            assert len(lens.fed) == 2 and lens.fed[0].max() <= 2
            assert (lens.fed[1].mean() > 50) == fed_back
            engine.close()

    run(go())


def test_a_slow_lens_runs_one_job_at_a_time_at_its_rate_and_a_failing_one_is_left_off(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo, lens_fps=1000)
        lens = FakeLens(image=30, delay=0.3)
        with_lens(engine, lens)
        pipeline = engine.pipeline(Settings(lens="dream"), print)
        for i in range(5):
            await pipeline.process(make_frame(0, i))
        await settle(pipeline)
        assert len(lens.fed) == 1  # one job in flight at most: frames meanwhile start none
        engine.close()
        engine = engine_for(tiny_zoo, lens_fps=2)
        lens = FakeLens(image=30)
        with_lens(engine, lens)
        pipeline = engine.pipeline(Settings(lens="dream"), print)
        for i in range(4):
            await pipeline.process(make_frame(0, i))
            await settle(pipeline)
        assert len(lens.fed) == 1  # 2 a second
        engine.close()
        engine = engine_for(tiny_zoo)
        with_lens(engine, FakeLens(fail=True))
        errors: list[str] = []
        pipeline = engine.pipeline(Settings(style="invert", lens="dream"), errors.append)
        for i in range(3):
            assert np.abs(rgb(await pipeline.process(make_frame(100, i))) - 155).max() <= 3
            await settle(pipeline)
        assert errors == ["lens 'fake-lens' failed (bad layer); the lens is off (trying it again in 1 s)"]
        engine.close()

    run(go())


def test_closing_cancels_the_jobs_in_flight_and_starts_no_more(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo)
        slow_down(engine.registry, "fake-vanilla", 0.5)
        with_lens(engine, FakeLens(image=30, delay=0.5))
        pipeline = engine.pipeline(Settings(saliency="vanilla", lens="dream"), print)
        await pipeline.process(make_frame(100, 0))
        tasks = (pipeline.saliency.task, pipeline.lens.task)
        assert all(t is not None for t in tasks)
        pipeline.close()
        await asyncio.sleep(0)
        assert pipeline.closed and all(t.cancelled() for t in tasks)
        pipeline.saliency.task = pipeline.lens.task = None  # as if both had ended: a closed pipeline still starts none
        await pipeline.process(make_frame(100, 1))
        assert pipeline.saliency.task is None and pipeline.lens.task is None
        engine.close()

    run(go())


def test_an_even_camera_frame_is_read_by_opencvs_i420_conversion(tiny_zoo):
    """The fast path for the camera's usual frames: yuv420p of even sides goes through
    OpenCV's I420 conversion (PyAV's own rgb24 differs by up to 3 levels), as the side jobs see."""
    import cv2

    async def go():
        engine = engine_for(tiny_zoo)
        lens = FakeLens(image=30)
        with_lens(engine, lens)
        pipeline = engine.pipeline(Settings(lens="fool"), print)
        frame = make_frame(np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8), 0)
        await pipeline.process(frame)
        await asyncio.wait_for(pipeline.lens.task, 5)
        assert np.array_equal(lens.fed[0], cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420))
        assert not np.array_equal(lens.fed[0], frame.to_ndarray(format="rgb24"))
        full_range = frame.reformat(format="yuvj420p")  # an MJPEG webcam's frames: not I420's limited range
        full_range.pts = 3000
        await asyncio.sleep(0.05)  # the lens is due again (100 a second)
        await pipeline.process(full_range)
        await asyncio.wait_for(pipeline.lens.task, 5)
        assert np.array_equal(lens.fed[-1], full_range.to_ndarray(format="rgb24"))
        pipeline.close()
        engine.close()

    run(go())


def test_closing_the_engine_drops_the_jobs_still_queued_in_both_pools(tiny_zoo):
    """Shutting down does not wait for, or run, the jobs still waiting for a thread."""
    import threading

    engine = engine_for(tiny_zoo)
    release, ran = threading.Event(), []

    def job(pool: str) -> None:
        release.wait(5)
        ran.append(pool)

    queued = {pool: [getattr(engine, pool).submit(job, pool) for _ in range(16)] for pool in ("style_pool", "saliency_pool")}
    engine.close()
    release.set()
    for pool, futures in queued.items():
        cancelled = sum(f.cancelled() for f in futures)
        assert cancelled >= 16 - getattr(engine, pool)._max_workers and cancelled > 0, pool
        assert ran.count(pool) <= 16 - cancelled, pool


def test_an_rgb_frame_is_read_as_rgb_and_a_saliency_map_alone_is_drawn(tiny_zoo):
    """Frames that arrive as RGB (not the camera's yuv420p) are copied as they are; with no
    style, a saliency choice still makes the frame work to do (its map is drawn)."""
    async def go():
        engine = engine_for(tiny_zoo)
        pipeline = engine.pipeline(Settings(style="invert"), print)
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, :32], image[:, 32:] = (200, 60, 10), (30, 90, 220)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        assert np.abs(rgb(await pipeline.process(frame)) - (255 - image.astype(int))).max() <= 6  # sent on as yuv420p
        pipeline.update(Settings(saliency="vanilla", opacity=1.0))
        for i in range(50):
            out = await pipeline.process(make_frame(100, i))
            if pipeline.saliency.result is not None:
                break
            await asyncio.sleep(0.02)
        drawn = rgb(await pipeline.process(make_frame(100, 99)))
        assert out is not None and np.abs(drawn[:, -4:] - 100).mean() > 40  # the map's hot right side over the plain frame
        assert pipeline.lens.task is None and pipeline.lens.result is None  # lens off: no lens job at all
        engine.close()

    run(go())


def test_closing_the_engine_does_not_wait_for_jobs_in_flight(tiny_zoo):
    engine = engine_for(tiny_zoo)
    started = time.perf_counter()
    for pool in (engine.style_pool, engine.saliency_pool):
        pool.submit(time.sleep, 1.0)
    engine.close()
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("size, box, fitted", [
    ((320, 240), (640, 480), (320, 240)), ((640, 480), (640, 480), (640, 480)), ((640, 480), None, (640, 480)),
    ((639, 479), (639, 479), (639, 479)), ((800, 300), (640, 480), (640, 240)), ((300, 800), (640, 480), (180, 480)), ((1280, 720), (480, 360), (480, 270)),
])
def test_a_frame_is_processed_at_its_size_or_scaled_to_fit_the_box(size, box, fitted):
    from stylecam.server.engine import fit_within

    assert fit_within(*size, box) == fitted


def test_a_side_job_input_buffer_is_reused_for_frames_of_one_size():
    from stylecam.server.engine import _copy_into

    first = np.full((4, 6, 3), 7, np.uint8)
    buffer = _copy_into(None, first)
    assert buffer is not first and np.array_equal(buffer, first)
    again = _copy_into(buffer, np.full((4, 6, 3), 9, np.uint8))
    assert again is buffer and again[0, 0, 0] == 9
    bigger = _copy_into(buffer, np.zeros((8, 6, 3), np.uint8))
    assert bigger is not buffer and bigger.shape == (8, 6, 3)
    smaller = _copy_into(bigger, np.ones((2, 6, 3), np.uint8))
    assert smaller is not bigger and smaller.shape == (2, 6, 3) and smaller.all()


@pytest.mark.parametrize("settings", [Settings(saliency="gradcam"), Settings(saliency="vanilla"), Settings(saliency="occlusion", lens="dream")],
                         ids=["a method that sorts before off", "one that sorts after it", "and a lens"])
def test_a_saliency_method_alone_is_something_to_do(tiny_zoo, settings):
    """Only "off" is off, whatever the method's name: the frame is not passed through, and a map starts."""
    async def go():
        engine = engine_for(tiny_zoo)
        pipeline = engine.pipeline(settings, print)
        frame = make_frame(90, 0)
        assert await pipeline.process(frame) is not frame and pipeline.saliency.task is not None
        pipeline.close()
        engine.close()

    run(go())


def test_any_lens_but_off_keys_its_views():
    """A lens whose name sorts after "off" (none ships yet) is on like the others."""
    from stylecam.server.engine import _lens_key, _saliency_key

    assert _lens_key(Settings(lens="zoom", layer=3)) == ("zoom", 3, -1, None) and _lens_key(Settings(lens="dream"))[0] == "dream"
    assert _lens_key(Settings()) is None and _saliency_key(Settings()) is None
    assert _saliency_key(Settings(saliency="vanilla")) == "vanilla" and _saliency_key(Settings(saliency="gradcam")) == "gradcam"


def test_a_frame_over_a_tiny_pixel_cap_keeps_even_sides_of_at_least_two(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo, max_pixels=4)
        errors = []
        pipeline = engine.pipeline(Settings(style="invert"), errors.append)
        out = await pipeline.process(make_frame(40, 0))
        assert (out.width, out.height) == (2, 2) and errors == [
            "incoming frames of 64x48 exceed the 4-pixel cap (--max-frame-pixels); scaled to 2x2"]
        engine.close()
        engine = engine_for(tiny_zoo, max_pixels=160)  # a thin frame: its width would round to 0
        out = await engine.pipeline(Settings(style="invert"), print).process(make_frame(40, 0, size=(4, 400)))
        assert (out.width, out.height) == (2, 126)  # at least 2 wide, even
        engine.close()

    run(go())


def test_the_settings_in_force_are_the_last_update(tiny_zoo):
    engine = engine_for(tiny_zoo)
    pipeline = engine.pipeline(Settings(style="invert"), print)
    assert pipeline.settings == Settings(style="invert")
    pipeline.update(Settings(style="tint", strength=0.5))
    assert pipeline.settings == Settings(style="tint", strength=0.5)
    engine.close()


def test_a_frame_over_the_pixel_cap_is_scaled_to_even_sides(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo, max_pixels=1000)
        pipeline = engine.pipeline(Settings(style="invert"), print)
        out = await pipeline.process(make_frame(40, 0))
        assert (out.width, out.height) == (36, 26)  # 64x48 x sqrt(1000 / 3072): 36.5 x 27.4, floored to even
        out = await pipeline.process(make_frame(40, 1, size=(48, 64)))
        assert (out.width, out.height) == (26, 36)  # upright: 27.4 x 36.5
        engine.close()

    run(go())


def test_saliency_threads_are_reniced_above_the_thread_that_made_them(tiny_zoo):
    """A pool thread starts at its creator's niceness; the saliency ones go 10 above it,
    whatever that is (here 2 above the test's own)."""
    import os
    import sys
    import threading

    if sys.platform != "linux":
        pytest.skip("per-thread niceness is Linux's")
    engine = engine_for(tiny_zoo)
    seen = {}

    def creator() -> None:
        tid = threading.get_native_id()
        seen["base"] = os.getpriority(os.PRIO_PROCESS, tid) + 2
        os.setpriority(os.PRIO_PROCESS, tid, seen["base"])
        seen["saliency"] = engine.saliency_pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()

    thread = threading.Thread(target=creator)
    thread.start()
    thread.join()
    engine.close()
    assert seen["saliency"] == min(19, seen["base"] + 10)


def test_a_failed_model_waits_twice_as_long_each_time_up_to_a_minute(monkeypatch):
    from stylecam.server import engine as engine_module

    clock = [1000.0]
    monkeypatch.setattr(engine_module.time, "monotonic", lambda: clock[0])
    backoff = engine_module.Backoff()
    waits = [backoff.failed("m") for _ in range(8)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff.resting("m") and not backoff.resting("other")
    clock[0] += 60.0
    assert not backoff.resting("m")  # its minute is over: tried again
    assert backoff.worked("m") and not backoff.worked("m")  # the page hears once that it works again
    assert backoff.failed("m") == 1.0  # a success forgets the failures


def test_buffers_follow_the_frame_size_up_and_down(tiny_zoo):
    async def go():
        engine = engine_for(tiny_zoo)
        pipeline = engine.pipeline(Settings(style="invert"), print)
        for pts, size in enumerate([(64, 48), (96, 72), (32, 24), (32, 48)]):
            out = await pipeline.process(make_frame(40, pts, size))
            assert (out.width, out.height) == size == pipeline._buffers.size
            assert np.abs(rgb(out) - 215).max() <= 3
        engine.close()

    run(go())


def test_a_stage_time_is_in_milliseconds_and_a_frame_at_the_cap_is_not_over_it(tiny_zoo, monkeypatch):
    from stylecam.server import engine as engine_module

    async def go():
        engine = engine_for(tiny_zoo, max_pixels=64 * 48)
        errors = []
        pipeline = engine.pipeline(Settings(style="invert"), errors.append)
        out = await pipeline.process(make_frame(40, 0))
        assert (out.width, out.height) == (64, 48) and errors == []  # exactly at --max-frame-pixels: not scaled, not reported
        monkeypatch.setattr(engine_module.time, "perf_counter", lambda: 10.25)
        assert pipeline._time("z", 10.0) == 10.25 and pipeline.snapshot().ms["z"] == 250.0
        engine.close()

    run(go())


def test_off_and_cuda_read_from_a_message_or_a_command_line_mean_what_they_say(tiny_zoo):
    """Strings parsed at run time are equal to the literals, not the same objects."""
    assert ThreadPlan.for_device("".join(["cu", "da"]), 2, 16) == ThreadPlan(2, 1, 1, 1, 0)

    async def go():
        engine = engine_for(tiny_zoo)
        off = "".join(["of", "f"])
        pipeline = engine.pipeline(Settings(style="invert", saliency=off, lens=off), print)
        await pipeline.process(make_frame(40, 0))
        assert pipeline.saliency.task is None and pipeline.lens.task is None  # no side job for "off"
        engine.close()

    run(go())
