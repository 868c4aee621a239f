import tracemalloc

import numpy as np
import pytest

from stylecam.server.compose import Overlay, inferno_lut, mix_strength

# a colour map easy to do by hand: index i -> (i, 255 - i, 0)
RAMP = np.stack([np.arange(256), 255 - np.arange(256), np.zeros(256)], axis=1).astype(np.uint8)


def test_overlay_exact_pixels_by_hand():
    frame = np.array([[[10, 20, 30], [200, 100, 50], [100, 100, 100]]], np.uint8)  # 1x3
    saliency = np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 0.5]], np.float32)  # 2x3: both rows average to row 0
    out = Overlay(RAMP).apply(frame, saliency, opacity=0.5)
    assert out is frame
    # pixel 0: saliency 0 -> weight 0 -> unchanged
    # pixel 1: index 255 -> colour (255, 0, 0), weight 0.5: 200+27.5=227.5 -> 228, 100-50=50, 50-25=25
    # pixel 2: index round(127.5 + 0.5) = 128 -> colour (128, 127, 0), weight 0.25:
    #          100+7=107, 100+6.75=106.75 -> 107, 100-25=75
    assert frame.tolist() == [[[10, 20, 30], [228, 50, 25], [107, 107, 75]]]


def test_overlay_opacity_zero_and_full():
    frame = np.full((2, 2, 3), 90, np.uint8)
    hot = np.ones((7, 5), np.float32)  # any size
    Overlay(RAMP).apply(frame, hot, opacity=0.0)
    assert (frame == 90).all()
    Overlay(RAMP).apply(frame, hot, opacity=1.0)
    assert (frame == [255, 0, 0]).all()


def test_overlay_reuses_its_buffers_without_frame_sized_allocations():
    overlay = Overlay()
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    first = np.random.default_rng(1).random((224, 224), dtype=np.float32)
    second = first.copy()
    overlay.apply(frame, first, 0.6)  # warm-up allocates the buffers for 480x640
    buffers = overlay._blend
    # OpenCV allocates outside tracemalloc's sight: every buffer must keep its memory
    addresses = {name: array.ctypes.data for name, array in vars(overlay).items() if isinstance(array, np.ndarray) and array.size >= 480 * 640}
    assert len(addresses) >= 6
    tracemalloc.start()
    overlay.apply(frame, second, 0.6)  # a new map: resize + colour again
    overlay.apply(frame, second, 0.6)  # the same map: only the blend
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert overlay._blend is buffers
    assert peak < 480 * 640  # far below one uint8 frame plane
    assert {name: getattr(overlay, name).ctypes.data for name in addresses} == addresses


def test_inferno_runs_from_black_to_pale_yellow():
    lut = inferno_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert lut[0].max() < 10 and lut[255].min() > 140 and lut[255][0] > lut[255][2]


def test_mix_strength_by_hand_in_place():
    stylized = np.array([[[200, 0, 255]]], np.uint8)
    original = np.array([[[100, 40, 55]]], np.uint8)
    mix_strength(stylized, original, 0.3, out=original)
    # 0.3*200 + 0.7*100 = 130; 0.7*40 = 28; 0.3*255 + 0.7*55 = 76.5 + 38.5 = 115
    assert original.tolist() == [[[130, 28, 115]]]
    out = np.empty_like(stylized)
    assert mix_strength(stylized, stylized, 1.0, out).tolist() == stylized.tolist()


def test_mix_strength_rejects_out_of_range():
    frame = np.zeros((1, 1, 3), np.uint8)
    with pytest.raises(ValueError, match="1.5"):
        mix_strength(frame, frame, 1.5, frame)
