import json
import shutil

import numpy as np
import pytest

from export.bench_quality import main as bench_quality
from export.bench_quality import pan_clip
from style_helpers import CONTENT, STYLES
from tiny_models import write_tint


def test_pan_clip_moves_one_pixel_per_frame():
    photo = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    clip = pan_clip(photo, 64, 48, 5)
    assert len(clip) == 5 and all(frame.shape == (48, 64, 3) for frame in clip)
    assert np.array_equal(clip[1][:, :-1], clip[0][:, 1:])


@pytest.mark.timeout(900)
def test_quality_of_a_known_model(tmp_path, capsys):
    """tint keeps red fully and a quarter of green and blue (red style), so its flicker lies
    strictly between 0.25 and 1, and it is far from the photo's content. It works pixel by
    pixel, so once the pan is undone its output has not changed at all: shimmer 0."""
    (tmp_path / "zoo").mkdir()
    write_tint(tmp_path / "zoo")
    styles = tmp_path / "styles"
    styles.mkdir()
    shutil.copy(STYLES / "the_scream.jpg", styles / "red.jpg")
    shutil.copy(STYLES / "wave.jpg", styles / "blue.jpg")
    out = tmp_path / "quality.json"
    assert bench_quality(["--models", str(tmp_path / "zoo"), "--styles", str(styles), "--content", str(CONTENT / "bsds"),
                          "--size", "160", "--clips", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["style"]: row for row in result["rows"]}
    assert set(rows) == {"red", "blue"} and result["photos"] >= 10
    for row in rows.values():
        assert 0.25 < row["flicker"] < 1.0
        assert row["shimmer"] == 0.0
        assert row["content_loss"] > 0 and row["style_loss"] > 0 and row["photo_style_loss"] > 0
    assert "| tint | red |" in capsys.readouterr().out
