"""The track and the engine in-process, on the tiny zoo: newest frame wins, pts/time_base
kept, buffers reused, errors degrade to pass-through, top-5 parsing, sizes; a slow
saliency model never slows styling; and the shipped models (models/zoo) through the engine."""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from conftest import run
from tiny_models import slow_down

from stylecam.server.control import Settings
from stylecam.server.engine import Engine, ThreadPlan, fit_within
from stylecam.server.registry import Registry, scan
from stylecam.server.runner import top5
from stylecam.server.testing.client import scene
from stylecam.server.track import NewestFrame, StyledTrack

pytestmark = pytest.mark.timeout(30)
ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"


class ScriptedTrack(MediaStreamTrack):
    """Yields the given frames as fast as asked, then ends."""

    kind = "video"

    def __init__(self, frames):
        super().__init__()
        self._frames = list(frames)

    async def recv(self):
        await asyncio.sleep(0)
        if not self._frames:
            raise MediaStreamError
        return self._frames.pop(0)


def make_frame(value: int | np.ndarray, pts: int, size=(64, 48)) -> av.VideoFrame:
    """A yuv420p frame, flat grey ``value`` or the RGB image ``value``."""
    image = value if isinstance(value, np.ndarray) else np.full((size[1], size[0], 3), value, np.uint8)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    frame.pts, frame.time_base = pts, fractions.Fraction(1, 90000)
    return frame


def make_engine(zoo, process_size=(32, 24), max_pixels=1920 * 1080, saliency_fps=100.0, lens_fps=60.0) -> Engine:
    plan = ThreadPlan.for_device("cpu", max_peers=2, threads=1)
    registry = Registry(scan(zoo, "cpu"), "cpu", {"style": 1, "multistyle": 1, "saliency": 1})
    return Engine(registry, plan, process_size, max_pixels, saliency_fps, lens_fps)


def test_newest_frame_wins_and_pts_are_kept(tiny_zoo):
    async def go():
        engine = make_engine(tiny_zoo)
        errors = []
        pipeline = engine.pipeline(Settings(style="invert"), errors.append)
        source = NewestFrame(ScriptedTrack([make_frame(10 * i, 3000 * i) for i in range(5)]))
        await asyncio.sleep(0.05)  # the reader drains all five before anyone asks
        track = StyledTrack(source, pipeline)
        out = await track.recv()
        assert out.pts == 12000 and out.time_base == fractions.Fraction(1, 90000)
        assert source.frames_in == 5 and source.dropped == 4
        assert np.abs(out.to_ndarray(format="rgb24").astype(int) - (255 - 40)).max() <= 3
        with pytest.raises(MediaStreamError):
            await track.recv()
        assert not errors
        engine.close()

    run(go())


def test_buffers_reused_per_size_and_saliency_overlaid(tiny_zoo):
    async def go():
        engine = make_engine(tiny_zoo)
        pipeline = engine.pipeline(Settings(style="tint", weights=(("red", 1.0),), saliency="vanilla", opacity=1.0), print)
        await pipeline.process(make_frame(100, 0))
        buffers = pipeline._buffers
        assert buffers.small.shape == (24, 32, 3) and buffers.rgb.shape == (48, 64, 3)
        while pipeline.saliency.task is not None:
            await asyncio.sleep(0.01)
        out = (await pipeline.process(make_frame(100, 1))).to_ndarray(format="rgb24")
        assert pipeline._buffers is buffers  # same size: same buffers
        # opacity 1: the map ramps from 0 (left) to 1 (right): the left keeps the red-tinted
        # frame, the right turns the inferno colour of 1 (pale yellow)
        left, right = out[:, :2].reshape(-1, 3).mean(0), out[:, -2:].reshape(-1, 3).mean(0)
        assert left[0] > 80 and left[1] < 40 and left[2] < 40
        assert right[0] > 200 and right[1] > 200
        assert [c["label"] for c in pipeline.snapshot().top5][:2] == ["c3", "c6"]
        await pipeline.process(make_frame(100, 2, size=(80, 60)))
        assert pipeline._buffers is not buffers and pipeline._buffers.rgb.shape == (60, 80, 3)
        engine.close()

    run(go())


@pytest.mark.slow
def test_a_slow_saliency_model_does_not_slow_styling(tiny_zoo):
    """Saliency runs beside styling: with a saliency model 7.5x slower than the style model
    (and a saliency job wanted on every frame), styling keeps at least 90% of its rate
    (best of two rounds each, so one scheduling hiccup on a busy machine does not decide)."""

    async def styled_per_second(pipeline, frames: list[av.VideoFrame]) -> float:
        start = time.perf_counter()
        for frame in frames:
            await pipeline.process(frame)
        return len(frames) / (time.perf_counter() - start)

    async def go():
        engine = make_engine(tiny_zoo)  # saliency_fps 100: a new saliency job as soon as one is done
        slow_down(engine.registry, "invert", 0.04)
        saliency = slow_down(engine.registry, "fake-vanilla", 0.3)
        frames = [make_frame(100, i) for i in range(20)]  # 0.8 s of styling
        alone = engine.pipeline(Settings(style="invert"), print)
        beside = engine.pipeline(Settings(style="invert", saliency="vanilla"), print)
        await alone.process(frames[0])  # buffers allocated before the clock starts
        await beside.process(frames[0])
        rates = {"alone": [], "beside": []}
        for _ in range(2):
            rates["alone"].append(await styled_per_second(alone, frames))
            rates["beside"].append(await styled_per_second(beside, frames))
        assert saliency.runs >= 4  # saliency really ran alongside, all along
        assert max(rates["beside"]) >= 0.9 * max(rates["alone"]), rates
        assert [c["label"] for c in beside.snapshot().top5][:1] == ["c3"]
        beside.close()
        engine.close()

    run(go())


def test_saliency_threads_give_way_to_styling(tiny_zoo):
    """On CPU the saliency threads run at a higher niceness than styling's, so a CPU-bound
    saliency graph takes the cores only when styling leaves them idle."""
    import os
    import sys
    import threading

    engine = make_engine(tiny_zoo)
    nice = engine.saliency_pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    style = engine.style_pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    engine.close()
    assert engine.plan.saliency_nice == 10 and ThreadPlan.for_device("cuda", 2).saliency_nice == 0
    if sys.platform == "linux":
        assert nice - style == 10


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_real_saliency_graph_gives_a_map_and_top5():
    """The shipped multi-style network and Grad-CAM graph (models/zoo) through the engine:
    the graph is fed its frame and target (-1: the top class), and what the peer's stats
    send (``pipeline.snapshot().top5``) and overlay are exactly what the graph gives for that frame."""

    async def go():
        engine = make_engine(ZOO, process_size=(128, 96))
        errors = []
        pipeline = engine.pipeline(Settings(style="multistyle_paint", saliency="gradcam", opacity=0.6), errors.append)
        image = scene(256, 192)
        styled = (await pipeline.process(make_frame(image, 0))).to_ndarray(format="rgb24")
        while pipeline.saliency.task is not None:
            await asyncio.sleep(0.02)
        overlaid = (await pipeline.process(make_frame(image, 1))).to_ndarray(format="rgb24")
        assert not errors
        assert np.abs(styled.astype(int) - image).mean() > 20  # styled, not passed through
        assert np.abs(overlaid.astype(int) - styled).mean() > 5  # the map is drawn on it

        gradcam = engine.registry.model("saliency_gradcam")
        want = gradcam.run(frame=pipeline.saliency.input, target=np.array([-1], np.int64))
        assert pipeline.saliency.result.map.shape == (224, 224)
        np.testing.assert_allclose(pipeline.saliency.result.map, want["saliency"], atol=1e-5)
        assert 0.0 <= pipeline.saliency.result.map.min() and pipeline.saliency.result.map.max() <= 1.0 and pipeline.saliency.result.map.std() > 0.05
        labels = engine.registry.entries["saliency_gradcam"].labels
        assert len(labels) == 1000 and len(pipeline.snapshot().top5) == 5
        assert [c["label"] for c in pipeline.snapshot().top5] == [labels[i] for i in np.argsort(-want["logits"])[:5]]
        assert int(want["class"][0]) == int(np.argmax(want["logits"]))  # -1 asked for the top class
        engine.close()

    run(go(), timeout=50)


def test_unusable_model_passes_frames_through_and_reports(tiny_zoo, tmp_path):
    import shutil

    for name in ("invert.onnx", "invert.json"):
        shutil.copy(tiny_zoo / name, tmp_path / name)
    (tmp_path / "invert.onnx").write_bytes(b"corrupted")

    async def go():
        engine = make_engine(tmp_path)
        errors = []
        pipeline = engine.pipeline(Settings(style="invert"), errors.append)
        out = (await pipeline.process(make_frame(77, 0))).to_ndarray(format="rgb24")
        assert abs(out.mean() - 77) < 3
        await pipeline.process(make_frame(77, 1))
        assert len(errors) == 1 and "sha256" in errors[0] and "invert" in errors[0]
        engine.close()

    run(go())


def test_oversized_frames_are_scaled_down_once_reported(tiny_zoo):
    async def go():
        engine = make_engine(tiny_zoo, process_size=None, max_pixels=32 * 24)
        errors = []
        pipeline = engine.pipeline(Settings(style=None), errors.append)
        out = await pipeline.process(make_frame(50, 0, size=(64, 48)))
        await pipeline.process(make_frame(50, 1, size=(64, 48)))
        assert (out.width, out.height) == (32, 24) and len(errors) == 1 and "--max-frame-pixels" in errors[0]
        engine.close()

    run(go())


def test_fit_within():
    assert fit_within(640, 480, (320, 240)) == (320, 240)
    assert fit_within(1280, 720, (320, 240)) == (320, 180)
    assert fit_within(640, 960, (320, 240)) == (160, 240)  # the height binds
    assert fit_within(641, 481, (320, 240)) == (318, 240)  # 319.8 x 240.0, floored to even sides
    assert fit_within(640, 480, (1, 1)) == (2, 2)  # never below 2
    assert fit_within(300, 280, (320, 240)) == (256, 240)  # the width fits, the height does not
    assert fit_within(300, 200, (320, 240)) == (300, 200)
    assert fit_within(641, 481, None) == (641, 481)


def test_top5_softmaxes_logits():
    logits = np.array([0.0, 3.0, 1.0, 2.0, -1.0, 5.0], np.float32)
    got = top5(logits, ("a", "b", "c", "d", "e"))
    assert [c["label"] for c in got] == ["class 5", "b", "d", "c", "a"]
    p = np.exp(logits - 5.0) / np.exp(logits - 5.0).sum()
    assert [c["p"] for c in got] == pytest.approx(p[[5, 1, 3, 2, 0]], abs=1e-4)


def test_registry_pairs_precisions_and_runs_the_fastest_verified_one(tiny_zoo, tmp_path):
    import dataclasses
    import shutil

    from stylecam.server.model_card import load_card, write_card

    shutil.copy(tiny_zoo / "invert.onnx", tmp_path / "invert.onnx")
    card = dataclasses.replace(load_card(tiny_zoo / "invert.json"), source={"checkpoint_sha256": "abc"})
    write_card(card, tmp_path)
    write_card(dataclasses.replace(card, name="invert_fp16", precision="fp16"), tmp_path)
    (tmp_path / "notes.json").write_text('{"not": "a card"}')
    assert scan(tmp_path, "cuda")["invert"].card.precision == "fp16"
    assert scan(tmp_path, "cpu")["invert"].card.precision == "fp32"  # no int8 variant here
    write_card(dataclasses.replace(card, name="invert_int8", precision="int8"), tmp_path)
    assert scan(tmp_path, "cpu")["invert"].card.precision == "int8"  # the fastest verified one on CPU
    assert scan(tmp_path, "cuda")["invert"].card.precision == "fp16"
    assert scan(tmp_path, "cpu", "fp32")["invert"].card.precision == "fp32"
    assert scan(tmp_path, "cuda", "int8")["invert"].card.precision == "int8"
    (tmp_path / "invert_fp16.json").unlink()
    assert scan(tmp_path, "cpu", "fp16")["invert"].card.precision == "fp32"  # asked for one that is not there
    assert list(scan(tmp_path, "cpu")) == ["invert"]
    assert scan(tmp_path / "missing", "cpu") == {}
