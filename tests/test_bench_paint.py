import cv2
import numpy as np
import pytest

from stylecam.bench import paint


def grey(values: np.ndarray) -> np.ndarray:
    """R = G = B, so luma is the value itself, with no rounding."""
    return np.repeat(values.astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def photo():
    return grey(np.random.default_rng(0).integers(0, 100, (48, 64)))


def test_detail_is_one_for_the_photo_two_for_twice_its_contrast_and_zero_when_flat(photo):
    assert paint.detail(photo, photo) == 1.0
    assert paint.detail(grey(2 * photo[..., 0].astype(np.int32)), photo) == pytest.approx(2.0, rel=1e-6)
    assert paint.detail(np.full_like(photo, 77), photo) == 0.0
    blurred = cv2.GaussianBlur(photo, (5, 5), 2)
    assert paint.detail(blurred, photo) < 0.5  # a smear removes texture


def test_palette_distance_by_hand():
    """Two flat colours differing in L alone: every direction d projects the difference to
    |dL| * |d_L|, so the distance is |dL| times the mean of |d_L| over the directions."""
    a, b = grey(np.full((8, 8), 200)), grey(np.full((8, 8), 50))
    lightness = [float(cv2.cvtColor(x[:1, :1], cv2.COLOR_RGB2LAB)[0, 0, 0]) * 100 / 255 for x in (a, b)]
    want = abs(lightness[0] - lightness[1]) * np.abs(paint.DIRECTIONS[:, 0]).mean()
    assert paint.palette_distance(a, b) == pytest.approx(want, rel=1e-5)
    assert paint.palette_distance(a, a) == 0.0
    assert paint.palette_distance(a, paint.palette_quantiles(b)) == paint.palette_distance(a, b)
    assert paint.DIRECTIONS.shape == (paint.PROJECTIONS, 3)
    assert np.allclose(np.linalg.norm(paint.DIRECTIONS, axis=1), 1.0)


def test_palette_distance_ignores_where_the_colours_are_but_not_how_much_of_each():
    rng = np.random.default_rng(1)
    painting = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    shuffled = rng.permutation(painting.reshape(-1, 3)).reshape(painting.shape)
    assert paint.palette_distance(shuffled, painting) == pytest.approx(0.0, abs=1e-9)
    half = painting.copy()
    half[:16] = painting[16:]  # the bottom half's colours twice, the top half's gone
    assert paint.palette_distance(half, painting) > 1.0


def test_structure_kept_is_one_for_the_photo_and_its_negative_and_near_zero_for_noise(photo):
    assert paint.structure_kept(photo, photo) == pytest.approx(1.0)
    assert paint.structure_kept(255 - photo, photo) == pytest.approx(1.0)  # same edges, other colours
    noise = np.random.default_rng(2).integers(0, 256, photo.shape, dtype=np.uint8)
    assert abs(paint.structure_kept(noise, photo)) < 0.1
